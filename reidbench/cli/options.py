"""Small helpers shared by the commands: KEY=VALUE options, devices, lists."""

from __future__ import annotations

import json
from typing import Any

import torch

from reidbench.errors import ParameterError


def parse_value(text: str) -> Any:
    """``5`` -> 5, ``0.5`` -> 0.5, ``true`` -> True, ``a,b`` stays a string, JSON is read as JSON."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_kv(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"expected KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = parse_value(value)
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ParameterError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ParameterError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return dev


def split_floats(text: str, what: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ParameterError(f"{what}: expected comma-separated numbers, got {text!r}") from None

