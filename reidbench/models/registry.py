"""The model registry: create a trained re-ID model by name.

A registered model is a :class:`ModelEntry`: its card (method, paper, recipe, the embedded
default's backbone and dataset, the paper's numbers, the deviations), the training recipe that
makes it, and an optional ``configure`` hook for what belongs to its inference path (JAD's
circuitous scaling). Adding a model means one module that calls :func:`register_model`.

Checkpoints for the embedded default ship with the package in ``reidbench/models/weights``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidbench.errors import CheckpointError, ParameterError, ReidbenchError
from reidbench.models.backbones import build_backbone
from reidbench.models.base import ReIDModel
from reidbench.models.card import ModelCard
from reidbench.models.checkpoints import load_into, read_card_json, read_state_dict, sha256_file
from reidbench.registry import Registry

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its card, the recipe that trains it, and inference-path options.

    ``configure(model, **options)`` adds what belongs to the model's own inference path; the keys
    of ``options`` are the options a user may pass (``--model-option cs=false``).
    """

    card: ModelCard
    recipe: Callable[..., Any]
    configure: Callable[..., None] | None = None
    options: dict[str, Any] = field(default_factory=dict)


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(entry: ModelEntry) -> ModelEntry:
    MODELS.add(entry.card.name, entry)
    return entry


def shipped_checkpoint(name: str) -> Path | None:
    p = WEIGHTS_DIR / f"{name}.safetensors"
    return p if p.is_file() else None


def model_card(name: str) -> ModelCard:
    """The card of a registered model, completed from its shipped checkpoint's record if any."""
    entry = MODELS.get(name)
    ckpt = shipped_checkpoint(name)
    if ckpt is None:
        return entry.card
    trained, _ = read_card_json(ckpt)
    return _merge(entry.card, trained, ckpt)


def _merge(code_card: ModelCard, trained: ModelCard | None, ckpt: Path) -> ModelCard:
    """Method facts come from the code; what training produced comes from the checkpoint's card."""
    if trained is None:
        return code_card.replace(checkpoint=str(ckpt))
    return code_card.replace(
        backbone=trained.backbone,
        input_size=trained.input_size,
        feat_dim=trained.feat_dim,
        num_classes=trained.num_classes,
        train_dataset=trained.train_dataset,
        hyperparams=trained.hyperparams,
        mean=trained.mean,
        std=trained.std,
        pooling=trained.pooling,
        checkpoint=str(ckpt),
        sha256=trained.sha256,
    )


def list_models(pattern: str = "*", *, method: str | None = None) -> list[ModelCard]:
    cards = [model_card(n) for n in MODELS.names(pattern)]
    return [c for c in cards if method is None or c.method.lower() == method.lower()]


def build_model(card: ModelCard, *, imagenet_weights: str | Path | None = None) -> ReIDModel:
    """An untrained network shaped as ``card`` says."""
    backbone, feat_dim = build_backbone(card.backbone, imagenet_weights)
    return ReIDModel(
        backbone, feat_dim, card.num_classes, mean=card.mean, std=card.std,
        pooling=card.pooling, input_size=card.input_size,
    )  # fmt: skip


def create_model(
    name: str,
    *,
    checkpoint: str | Path | None = "default",
    device: str | torch.device = "cpu",
    options: dict[str, Any] | None = None,
    **card_overrides: Any,
) -> ReIDModel:
    """Build the registered model ``name`` in eval mode.

    ``checkpoint``: ``"default"`` loads the shipped checkpoint (an error if there is none),
    ``None`` leaves the weights untrained, a path loads that file (its card JSON, if present,
    decides the architecture). ``options`` are the model's inference-path options.
    ``card_overrides`` change the architecture (``backbone=``, ``num_classes=``, ``input_size=``).
    The result has a ``card`` attribute.
    """
    if ":" in name:
        return load_external(name, device=device)
    entry = MODELS.get(name)
    opts = dict(entry.options)
    for k, v in (options or {}).items():
        if k not in opts:
            raise ParameterError(
                f"model {name!r} has no option {k!r}; its options are: {', '.join(opts) or 'none'}"
            )
        opts[k] = v
    card = entry.card
    state = None
    if checkpoint == "default":
        ckpt = shipped_checkpoint(name)
        if ckpt is None:
            raise CheckpointError(
                f"model {name!r} has no shipped checkpoint; train one with `reidbench train --model {name}` "
                f"and pass it with --checkpoint"
            )
        card = model_card(name)
        if card.sha256 and sha256_file(ckpt) != card.sha256:
            raise CheckpointError(f"shipped checkpoint {ckpt} does not match the sha256 on its card; reinstall reidbench")
        state = read_state_dict(ckpt)
    elif checkpoint is not None:
        ckpt = Path(checkpoint).expanduser()
        state = read_state_dict(ckpt)
        trained, _ = read_card_json(ckpt)
        if trained is not None:
            card = _merge(card, trained, ckpt)
        else:
            card = card.replace(checkpoint=str(ckpt), sha256=sha256_file(ckpt), **_infer_shape(state, card))
    if card_overrides:
        card = card.replace(**card_overrides)
    model = build_model(card)
    if state is not None:
        load_into(model, state, source=f"checkpoint {card.checkpoint}")
    if entry.configure is not None:
        entry.configure(model, **opts)
    model.card = card  # type: ignore[assignment]
    model.options = opts  # type: ignore[assignment]
    return model.to(device).eval()


def _infer_shape(state: dict[str, torch.Tensor], card: ModelCard) -> dict[str, Any]:
    """For a bare state dict: the classifier size from the weights, so any training set loads."""
    w = state.get("classifier.weight")
    return {"num_classes": int(w.shape[0]), "feat_dim": int(w.shape[1])} if w is not None else {}


class ExternalModel(nn.Module):
    """A user's module that maps [0,1] images to embeddings, benchmarked as a black box.

    Feature-map attacks need ``feature_map``/``head`` and are refused for these models.
    """

    def __init__(self, net: nn.Module, spec: str, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.net = net
        self.input_size = input_size
        self.input_transform = None
        self.card = ModelCard(
            name=spec, method="external", paper="", backbone=type(net).__name__, input_size=input_size,
            feat_dim=0, num_classes=0, train_dataset="unknown", recipe="external", distance="cosine",
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def bare(self) -> ExternalModel:
        return self


def load_external(spec: str, *, device: str | torch.device = "cpu") -> ExternalModel:
    """``package.module:factory`` -> the module the factory returns, in eval mode."""
    mod_name, _, fn_name = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ReidbenchError(f"cannot load --model {spec}: {exc}. Use package.module:factory, importable from here") from None
    net = factory()
    if not isinstance(net, nn.Module):
        raise ReidbenchError(f"--model {spec}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    size = tuple(getattr(net, "input_size", (256, 128)))
    return ExternalModel(net, spec, size).to(device).eval()  # type: ignore[arg-type]
