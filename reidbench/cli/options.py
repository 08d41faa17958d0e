"""Small helpers shared by the commands: KEY=VALUE options, devices, lists, paths.

Nothing here imports torch at module level: ``reidbench --help`` must stay fast, so the commands
import heavy modules inside their functions.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reidbench.errors import ParameterError

if TYPE_CHECKING:
    import torch


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


def available_devices() -> list[str]:
    """The devices a run can use on this machine: cpu, then cuda:N, then mps."""
    import torch

    out = ["cpu"]
    if torch.cuda.is_available():
        out += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        out.append("mps")
    return out


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, if this machine has it; else one line
    saying which devices are available here."""
    import torch

    text = name.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    here = available_devices()
    avail = f"available here: {', '.join(['auto', *here])}"
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise ParameterError(f"{option} {name!r} is not a device; {avail}") from None
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"{option} {name}: CUDA is not available on this machine; {avail}")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ParameterError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s); {avail}")
        return dev
    if dev.type == "mps" and "mps" in here:
        return dev
    if dev.type == "mps":
        raise ParameterError(f"{option} {name}: Apple MPS is not available on this machine; {avail}")
    raise ParameterError(f"{option} {name}: reidbench does not run on {dev.type} devices; {avail}")


def split_numbers(text: str, option: str, *, integer: bool = False) -> list[float] | list[int]:
    """``"2,5,8"`` -> [2.0, 5.0, 8.0]: a non-empty comma list of finite numbers (integers with
    ``integer``). Empty items, words, NaN and infinities are errors, never dropped or rounded."""
    example = "10 or 5,10,20" if integer else "2 or 2,5,8"
    items = text.split(",")
    if not text.strip() or any(not t.strip() for t in items):
        what = "no value" if not any(t.strip() for t in items) else "an empty item"
        raise ParameterError(f"{option} {text!r} has {what}; give a number or a comma list such as {example}")
    out: list[Any] = []
    for t in items:
        try:
            value = float(t)
        except ValueError:
            raise ParameterError(f"{option}: {t.strip()!r} is not a number; give a number or a comma list such as {example}") from None
        if not math.isfinite(value):
            raise ParameterError(f"{option}: {t.strip()} is not a finite number; give a number or a comma list such as {example}")
        if integer:
            if not value.is_integer():
                raise ParameterError(f"{option}: {t.strip()} is not a whole number; iterations are integers such as {example}")
            out.append(int(value))
        else:
            out.append(value)
    return out


def closest(name: str, names: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the closest of ``names``, or ``""``."""
    close = difflib.get_close_matches(name, list(names), n=1, cutoff=0.5)
    return f" (did you mean {close[0]}?)" if close else ""


def nonempty_path(ctx: click.Context, param: click.Parameter, value: str | None) -> Path | None:
    """A click callback for a ``click.Path`` option without ``path_type``: an empty value
    (``--out ""``) is an error, not the current folder; otherwise the value as a :class:`Path`."""
    del ctx
    if value is None:
        return None
    if not str(value).strip():
        flag = max(param.opts, key=len) if param.opts else "the path"
        raise ParameterError(f"{flag} is empty; give a path (. for the current folder)")
    return Path(value)
