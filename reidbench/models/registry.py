"""The model registry: create a trained re-ID model by name.

A registered model is a :class:`ModelEntry`: its card (method, paper, the name of the recipe that
trains it, the embedded default's backbone and dataset, the paper's numbers, the deviations, the
defense that is part of its inference path) and the options a user may pass. Adding a model means
one module that calls :func:`register_model`; the recipe is looked up by the card's ``recipe`` name
in ``reidbench.train``, which sits above this package.

:func:`create_network` builds the network with its weights. A defense that the card puts in the
inference path (``inference_defense``, JAD's circuitous scaling) lives in ``reidbench.defenses``,
above models, so it is installed by ``reidbench.zoo.create_model``, which is what the harness and
the command line call; :func:`inference_defense` says which one, given the options.

Checkpoints for the embedded default ship with the package in ``reidbench/models/weights``.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
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
from reidbench.models.checkpoints import (
    ForeignCheckpointError,
    bot_backbone,
    bot_to_reidbench,
    foreign_checkpoint_message,
    load_into,
    read_card_json,
    read_state_dict,
    read_tool_checkpoint,
    sha256_file,
)
from reidbench.models.external import create_tool_model, is_tool_spec
from reidbench.registry import Registry

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).parent / "weights"


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its card and its inference-path options.

    ``options``: the options a user may pass (``--model-option cs=false``) with their defaults.
    ``inference_switch``: the option that turns the card's ``inference_defense`` on or off (JAD:
    ``cs``); without one, the defense is always on.
    ``configure(model, **options)``: an optional hook for inference-path settings that need
    nothing above ``reidbench.models``.
    ``network``: the class :func:`build_model` instantiates, with :class:`ReIDModel`'s arguments;
    a model whose inference path is more than backbone + BNNeck head (FED's part pooling and
    occlusion scores) subclasses :class:`ReIDModel`.
    """

    card: ModelCard
    configure: Callable[..., None] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    inference_switch: str | None = None
    network: type[ReIDModel] = ReIDModel

    def __post_init__(self) -> None:
        if self.inference_switch is not None and self.inference_switch not in self.options:
            raise ValueError(f"model {self.card.name!r}: inference_switch {self.inference_switch!r} is not one of its options")


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
    network = MODELS.get(card.name).network if card.name in MODELS else ReIDModel
    return network(
        backbone, feat_dim, card.num_classes, mean=card.mean, std=card.std,
        pooling=card.pooling, input_size=card.input_size,
    )  # fmt: skip


def create_network(
    name: str,
    *,
    checkpoint: str | Path | None = "default",
    device: str | torch.device = "cpu",
    options: dict[str, Any] | None = None,
    **card_overrides: Any,
) -> ReIDModel:
    """Build the network of registered model ``name`` with its weights, in eval mode.

    ``checkpoint``: ``"default"`` loads the shipped checkpoint (an error if there is none),
    ``None`` leaves the weights untrained, a path loads that file (its card JSON, if present,
    decides the architecture). ``options`` are the model's inference-path options, checked and
    recorded as ``model.options``. ``card_overrides`` change the architecture (``backbone=``,
    ``num_classes=``, ``input_size=``). The result has a ``card`` attribute.

    The defense the card puts in the inference path is not installed here (it lives above models):
    ``reidbench.zoo.create_model`` returns the model with it.

    ``name`` may also be another tool's model, ``torchreid:ARCH`` or ``fastreid:CONFIG.yml``
    (:mod:`reidbench.models.external`), or ``package.module:factory``. A BoT checkpoint
    (michuanhaohao/reid-strong-baseline's ``resnet50_model_N.pth``) loads into ``baseline``; a
    checkpoint of another tool is refused naming the ``--model`` that loads it.
    """
    if is_tool_spec(name):  # torchreid:ARCH, fastreid:CONFIG.yml
        return create_tool_model(name, checkpoint=checkpoint, device=device, options=options,  # type: ignore[return-value]
                                 **card_overrides)  # fmt: skip
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
        state, origin, _ = read_tool_checkpoint(ckpt)
        if origin == "bot" and name == "baseline":
            state, card = _from_bot(state, card, ckpt)
        elif origin in ("torchreid", "fastreid", "bot"):
            raise ForeignCheckpointError(foreign_checkpoint_message(ckpt, origin, name, state))
        else:
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


def inference_defense(name: str, options: dict[str, Any] | None = None) -> str | None:
    """The defense (a ``reidbench.defenses`` spec) in the inference path of registered model
    ``name`` with ``options``: its card's ``inference_defense`` unless its switch option is off."""
    if ":" in name:
        return None  # an external model: a black box with no card of ours
    entry = MODELS.get(name)
    spec = entry.card.inference_defense
    if spec and entry.inference_switch is not None:
        opts = {**entry.options, **(options or {})}
        if not opts[entry.inference_switch]:
            return None
    return spec or None


def _from_bot(state: dict[str, torch.Tensor], card: ModelCard, ckpt: Path) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """A BoT (michuanhaohao/reid-strong-baseline) ``resnet50_model_N.pth`` as the BNNeck baseline:
    BoT's key names mapped onto ours, the card filled from what the weights and BoT's defaults
    say (last stride 1, BNNeck, ``TEST.NECK_FEAT after``, 256x128, ImageNet mean/std)."""
    backbone = bot_backbone(state)
    if "bottleneck.weight" not in state:
        raise CheckpointError(f"checkpoint {ckpt} is a BoT checkpoint trained without the BN neck (MODEL.NECK no); "
                              "reidbench's baseline has the BN neck, so it cannot take these weights")  # fmt: skip
    if backbone is None:
        raise CheckpointError(f"checkpoint {ckpt} is a BoT checkpoint with a backbone reidbench's baseline does not "
                              "have; it takes BoT's resnet50 and resnet18 (LAST_STRIDE 1, no IBN)")  # fmt: skip
    ours = bot_to_reidbench(state)
    ours.setdefault("mean", torch.tensor(card.mean).view(1, 3, 1, 1))
    ours.setdefault("std", torch.tensor(card.std).view(1, 3, 1, 1))
    w = ours.get("classifier.weight")
    card = card.replace(
        backbone=backbone, input_size=(256, 128), feat_dim=2048 if backbone == "resnet50" else 512,
        num_classes=int(w.shape[0]) if w is not None else card.num_classes, train_dataset="unknown",
        hyperparams={}, checkpoint=str(ckpt), sha256=sha256_file(ckpt),
        notes=f"imported: BoT (michuanhaohao/reid-strong-baseline) {backbone} checkpoint {ckpt.name}, "
              "its keys mapped onto reidbench's BNNeck baseline",
        deviations=(
            "imported: weights trained by BoT (michuanhaohao/reid-strong-baseline), not by reidbench; "
            "the training set and schedule are whatever that run used.",
            "Assumes BoT's default test config: LAST_STRIDE 1, NECK bnneck, TEST.NECK_FEAT after, "
            "input 256x128, ImageNet mean/std.",
        ),
    )  # fmt: skip
    return ours, card


def _infer_shape(state: dict[str, torch.Tensor], card: ModelCard) -> dict[str, Any]:
    """For a bare state dict: the classifier size from the weights, so any training set loads."""
    w = state.get("classifier.weight")
    if w is None:
        return {}
    if w.dim() != 2:
        raise CheckpointError(f"checkpoint for {card.name!r}: classifier.weight has shape {tuple(w.shape)}, not "
                              "(num_classes, feat_dim); is it a checkpoint of this model?")  # fmt: skip
    return {"num_classes": int(w.shape[0]), "feat_dim": int(w.shape[1])}


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
        try:
            out = self.net(x)
        except Exception as exc:  # user code: one line naming it, never a traceback
            raise ReidbenchError(f"--model {self.card.name}: the model raised {_first_line(exc)}") from None
        check_embeddings(out, self.card.name, len(x))
        return out

    def bare(self) -> ExternalModel:
        return self


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_embeddings(out: object, spec: str, batch: int) -> None:
    """A user model must map a batch of B images to a (B, D) float tensor."""
    if not isinstance(out, torch.Tensor):
        raise ReidbenchError(f"--model {spec}: the model returned {type(out).__name__}, not a (B, D) float tensor of "
                             "embeddings; return the embedding tensor alone")  # fmt: skip
    if out.dim() != 2 or out.shape[0] != batch or not torch.is_floating_point(out):
        raise ReidbenchError(f"--model {spec}: the model returned a {out.dtype} tensor of shape {tuple(out.shape)} for "
                             f"{batch} images; it must return ({batch}, D) float embeddings")  # fmt: skip


def _import_factory(spec: str) -> Any:
    """The factory named by ``module:factory``, importable from the current folder too."""
    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name:
        raise ReidbenchError(f"--model {spec!r}: expected package.module:factory")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ReidbenchError(f"cannot import {mod_name} for --model {spec}: {_first_line(exc)}. Use package.module:factory, "
                             "importable from the current folder or the Python path") from None  # fmt: skip
    except (Exception, SystemExit) as exc:  # noqa: BLE001  the user's module failed while importing
        raise ReidbenchError(f"--model {spec}: importing {mod_name} failed with {_first_line(exc)}") from None
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)
    factory = getattr(module, fn_name, None)
    if factory is None:
        raise ReidbenchError(f"--model {spec}: {mod_name} has no {fn_name!r}")
    if not callable(factory):
        raise ReidbenchError(f"--model {spec}: {fn_name} is a {type(factory).__name__}, not a function returning a model")
    return factory


def _input_size(net: nn.Module, spec: str) -> tuple[int, int]:
    size = getattr(net, "input_size", (256, 128))
    ok = isinstance(size, (tuple, list)) and len(size) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
    if not ok:
        raise ReidbenchError(f"--model {spec}: input_size is {size!r}; it must be (height, width) in positive whole pixels")
    return int(size[0]), int(size[1])


def load_external(spec: str, *, device: str | torch.device = "cpu") -> ExternalModel:
    """``package.module:factory`` -> the module the factory returns, in eval mode.

    User code is isolated: whatever the import, the factory or a probe forward raises (or a
    ``sys.exit``) becomes one line naming the factory, and a factory that returns something other
    than a module mapping (B, 3, H, W) images in [0,1] to (B, D) float embeddings is refused with
    what it returned.
    """
    factory = _import_factory(spec)
    try:
        net = factory()
    except TypeError as exc:
        raise ReidbenchError(f"--model {spec}: calling {spec.partition(':')[2]}() failed with {_first_line(exc)}; the "
                             "factory must take no arguments") from None  # fmt: skip
    except (Exception, SystemExit) as exc:  # noqa: BLE001  user code
        raise ReidbenchError(f"--model {spec}: the factory raised {_first_line(exc)}") from None
    if not isinstance(net, nn.Module):
        raise ReidbenchError(f"--model {spec}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    model = ExternalModel(net, spec, _input_size(net, spec)).to(device).eval()
    with torch.no_grad():
        model(torch.full((2, 3, *model.input_size), 0.5, device=device))  # refuse a bad output now, not mid-run
    return model
