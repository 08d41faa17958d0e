"""Saving and loading weights without ever running code from a file.

Checkpoints are safetensors files (``.safetensors``) with the model card beside them as JSON
(same stem, ``.json``). Plain torch state dicts (``.pt``/``.pth``) are read with
``weights_only=True``. A checkpoint whose keys or shapes do not match the model is refused with
one message listing the missing, unexpected and mis-shaped keys: never a silent partial load.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from reidbench.errors import CheckpointError
from reidbench.models.card import ModelCard


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, on CPU. Never unpickles arbitrary objects."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    try:
        if p.suffix == ".safetensors":
            state: Any = load_file(str(p), device="cpu")
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, OSError, EOFError, ValueError) as exc:
        msg = str(exc).splitlines()[0][:200]
        raise CheckpointError(
            f"cannot read checkpoint {p}: {msg}. Only safetensors and weights-only torch state dicts are accepted."
        ) from None
    except Exception as exc:  # torch raises UnpicklingError for files that need code to load
        raise CheckpointError(
            f"refusing to load {p}: it is not a plain tensor state dict ({type(exc).__name__}). "
            "Save it with torch.save(model.state_dict()) or as safetensors."
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {p} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_into(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> None:
    """Strictly load ``state`` into ``model``; one error listing every mismatch otherwise."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:

        def few(xs: list[str]) -> str:
            return ", ".join(xs[:6]) + (f" (+{len(xs) - 6} more)" if len(xs) > 6 else "")

        parts = []
        if missing:
            parts.append(f"missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatch (checkpoint vs model): {few(shapes)}")
        raise CheckpointError(
            f"{source} does not match the model: " + "; ".join(parts)
            + ". Check --model/--backbone or the card JSON beside the checkpoint."
        )
    model.load_state_dict(state, strict=True)


def save_checkpoint(model: nn.Module, card: ModelCard, path: str | Path, extra: dict[str, Any] | None = None) -> ModelCard:
    """Write ``path`` (.safetensors) and its card (.json); returns the card with its sha256."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = p.with_suffix(".tmp")
    save_file(state, str(tmp), metadata={"reidbench_model": card.name})
    tmp.chmod(0o644)
    tmp.replace(p)
    card = card.replace(checkpoint=p.name, sha256=sha256_file(p))
    record = json.loads(card.to_json())
    if extra:
        record["training"] = extra
    p.with_suffix(".json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return card


def read_card_json(path: str | Path) -> tuple[ModelCard | None, dict[str, Any]]:
    """The card stored beside a checkpoint, if any, and its training record."""
    j = Path(path).with_suffix(".json")
    if not j.is_file():
        return None, {}
    try:
        d = json.loads(j.read_text())
        return ModelCard.from_dict(d), d.get("training", {})
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"model card {j} is malformed ({exc}); delete it or fix it") from None
