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


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, dtypes, shapes and bytes, in name order: equal digests, equal weights."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint file, on CPU. Never unpickles arbitrary objects.

    safetensors, or a torch file read weights-only (:func:`load_weights_only`); a checkpoint dict
    (``state_dict``/``model`` inside) is unwrapped and ``module.`` prefixes are dropped.
    """
    return unwrap_state_dict(load_weights_only(path), path)


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
        card = ModelCard.from_dict(d)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"model card {j} is malformed ({exc}); delete it or fix it") from None
    size = card.input_size
    if not (isinstance(size, (tuple, list)) and len(size) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)):
        raise CheckpointError(f"model card {j}: input_size {list(size) if isinstance(size, (tuple, list)) else size!r} "
                              "is not (height, width) in positive pixels; fix it or delete the card")  # fmt: skip
    return card, d.get("training", {}) if isinstance(d, dict) else {}


# ---------------------------------------------------------------------------------------------
# Checkpoints written by other tools (torchreid, fast-reid, BoT): read weights-only, tell apart
# ---------------------------------------------------------------------------------------------


class ForeignCheckpointError(CheckpointError):
    """A checkpoint written by another tool than the one ``--model`` names."""


# Besides tensors, a tool's checkpoint may hold numpy scalars: torchreid's engine saves its rank-1
# as one. A numpy scalar is plain data (a dtype and bytes), so its two globals are allowed for
# weights-only loading, under both numpy 1 and numpy 2 names; nothing else is.
def _numpy_safe_globals() -> list[Any]:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return []
    core = getattr(np, "_core", None) or np.core
    scalar = core.multiarray.scalar
    allowed: list[Any] = [np.dtype, (scalar, "numpy.core.multiarray.scalar"), (scalar, "numpy._core.multiarray.scalar")]
    allowed += [type(np.dtype(t)) for t in ("float16", "float32", "float64", "int32", "int64", "bool")]
    return allowed


def load_weights_only(path: str | Path) -> Any:
    """The object a torch checkpoint file holds, unpickled weights-only (tensors, containers,
    numbers, strings, numpy scalars). A file that needs code to load is refused with one line."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read checkpoint {p}: {str(exc).splitlines()[0][:200]}") from None
    safe = getattr(torch.serialization, "safe_globals", None)
    try:
        if safe is not None:
            with safe(_numpy_safe_globals()):
                return torch.load(p, map_location="cpu", weights_only=True)
        return torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        msg = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {p}: {msg}. Only safetensors and weights-only torch state dicts are accepted."
        ) from None
    except Exception as exc:  # torch raises UnpicklingError for files that need code to load
        raise CheckpointError(
            f"refusing to load {p}: it holds Python objects that need code to unpickle ({type(exc).__name__}), "
            "and reidbench loads weights only. Save its state dict with torch.save(model.state_dict()) or as safetensors."
        ) from None


def unwrap_state_dict(raw: Any, path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint's object (torchreid: ``state_dict``; fast-reid: ``model``),
    with any ``module.`` prefix (DataParallel) removed."""
    state = raw
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} does not hold a state dict of tensors")
    return {str(k).removeprefix("module."): v for k, v in state.items()}


# Which tool wrote a checkpoint, and how to load it with reidbench.
TOOL_HINTS = {
    "torchreid": "--model torchreid:ARCH (the torchreid architecture it was trained with)",
    "fastreid": "--model fastreid:CONFIG.yml (the fast-reid config it was trained with)",
    "bot": "--model baseline (reidbench's BNNeck baseline takes BoT's resnet50/resnet18 weights)",
    "reidbench": "--model NAME, the reidbench model it was trained as (see the card JSON beside it)",
}
TOOL_NAMES = {
    "torchreid": "torchreid (KaiyangZhou/deep-person-reid)",
    "fastreid": "fast-reid (JDAI-CV/fast-reid)",
    "bot": "BoT (michuanhaohao/reid-strong-baseline)",
    "reidbench": "reidbench",
}


def checkpoint_origin(raw: Any, state: dict[str, torch.Tensor]) -> str | None:
    """``"torchreid"``, ``"fastreid"``, ``"bot"``, ``"reidbench"``, or None, from the key names
    of ``state`` and the container ``raw`` it came in."""
    keys = set(state)
    top = set(raw) if isinstance(raw, dict) else set()
    if "classifier.weight" in keys and any(k.startswith("base.layer") for k in keys):
        return "bot"  # BoT's Baseline: base (its ResNet), bottleneck (the BN neck), classifier
    if any(k.startswith("heads.") for k in keys) and any(k.startswith("backbone.") for k in keys):
        return "fastreid"
    if any(k.startswith(("head.bnneck.", "backbone.stem.")) for k in keys):
        return "reidbench"
    if "state_dict" in top and top & {"epoch", "rank1", "optimizer", "scheduler"}:
        return "torchreid"
    if "model" in top and top & {"iteration", "optimizer", "scheduler"}:
        return "fastreid"
    if "classifier.weight" in keys and ("conv1.conv.weight" in keys or "conv1.weight" in keys):
        return "torchreid"
    return None


def guess_torchreid_arch(state: dict[str, torch.Tensor]) -> str | None:
    """A likely torchreid architecture name for a torchreid state dict (OSNet width, ResNet depth)."""
    w = state.get("conv1.conv.weight")
    if w is not None:  # OSNet family: the stem's width gives the multiplier
        width = {64: "x1_0", 48: "x0_75", 32: "x0_5", 16: "x0_25"}.get(int(w.shape[0]))
        if width is None:
            return None
        return f"osnet_ain_{width}" if any(".IN." in k for k in state) else f"osnet_{width}"
    if "layer1.0.conv1.weight" in state:
        blocks = len({k.split(".")[1] for k in state if k.startswith("layer3.")})
        if "layer1.0.conv3.weight" in state:
            depth = {6: "resnet50", 23: "resnet101", 36: "resnet152"}.get(blocks)
            if depth and "fc.0.weight" in state:
                return f"{depth}_fc512"
            return depth
        return {2: "resnet18", 6: "resnet34"}.get(blocks)
    return None


def foreign_checkpoint_message(path: str | Path, origin: str, model: str, state: dict[str, torch.Tensor] | None = None) -> str:
    """One line: which tool ``path`` looks like it came from and which ``--model`` loads it."""
    hint = TOOL_HINTS[origin]
    if origin == "torchreid" and state is not None:
        arch = guess_torchreid_arch(state)
        if arch:
            hint = f"--model torchreid:{arch} (guessed from its layers; use the architecture it was trained with)"
    return (f"checkpoint {path} looks like it came from {TOOL_NAMES[origin]}, not from what --model {model} "
            f"loads; load it with {hint}")


def read_tool_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None, Any]:
    """A checkpoint file of any supported tool: (its state dict, the tool that wrote it or None,
    the raw object it holds). Weights-only; ``module.`` prefixes removed."""
    raw = load_weights_only(path)
    state = unwrap_state_dict(raw, Path(path).expanduser())
    return state, checkpoint_origin(raw, state), raw


def bot_to_reidbench(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """BoT's key names (``base.conv1``, ``base.bn1``, ``base.layerN``, ``bottleneck``,
    ``classifier``) as reidbench's BNNeck baseline names them (``backbone.stem.0``,
    ``backbone.stem.1``, ``backbone.layerN``, ``head.bnneck``, ``classifier``). Keys of neither
    are kept as they are, so a strict load reports them."""
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.startswith("base."):
            rest = k[len("base."):]
            if rest.startswith("conv1."):
                rest = "stem.0." + rest[len("conv1."):]
            elif rest.startswith("bn1."):
                rest = "stem.1." + rest[len("bn1."):]
            out["backbone." + rest] = v
        elif k.startswith("bottleneck."):
            out["head.bnneck." + k[len("bottleneck."):]] = v
        else:
            out[k] = v
    return out


def bot_backbone(state: dict[str, torch.Tensor]) -> str | None:
    """reidbench's backbone name for a BoT state dict: resnet50 or resnet18; None for others."""
    blocks = len({k.split(".")[2] for k in state if k.startswith("base.layer3.")})
    if "base.layer1.0.conv3.weight" in state:
        return "resnet50" if blocks == 6 else None
    if "base.layer1.0.conv2.weight" in state:
        return "resnet18" if blocks == 2 else None
    return None
