"""Models of other re-ID tools, built with the user's installed tool and benchmarked as they are.

* ``torchreid:ARCH`` (``torchreid:osnet_x1_0``, ``torchreid:resnet50``): the architecture from
  torchreid (KaiyangZhou/deep-person-reid), ``torchreid.models.build_model(ARCH, num_classes,
  pretrained=False)``. ``--checkpoint`` takes torchreid's own ``model.pth.tar-N`` (a dict with
  ``state_dict``; ``module.`` prefixes are dropped). The embedding is what torchreid evaluates
  with: the model's output in eval mode. Input: ImageNet mean/std at 256x128 (torchreid's
  defaults); distance: euclidean (its engine's default ``dist_metric``).
* ``fastreid:CONFIG.yml``: the model fast-reid (JDAI-CV/fast-reid) builds from that config, with
  ``MODEL.BACKBONE.PRETRAIN`` off and ``MODEL.WEIGHTS`` ignored (nothing is downloaded).
  ``--checkpoint`` takes fast-reid's ``model_final.pth`` (a dict with ``model``). The embedding is
  the meta-architecture's eval output (for ``Baseline``: the head's neck feature, after the BN
  neck). fast-reid feeds its model 0-255 pixels and normalises inside with ``MODEL.PIXEL_MEAN``
  and ``PIXEL_STD``; here the [0,1] images are scaled by 255 first. Input size: ``INPUT.SIZE_TEST``;
  distance: ``TEST.METRIC``.

BoT (michuanhaohao/reid-strong-baseline) checkpoints need no tool: they load into reidbench's own
``baseline`` (see ``reidbench.models.registry``).

Every checkpoint is read weights-only. The tools are optional dependencies
(``pip install 'reidbench[torchreid]'`` or ``'reidbench[fastreid]'``); nothing here imports them
until such a model is asked for. Feature-map attacks need ``feature_map``/``head``: these are
exposed for torchreid's ResNet and OSNet and for fast-reid's ``Baseline``; other architectures
are black boxes, and feature-map attacks refuse them with one line.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reidbench.errors import (
    CheckpointError,
    DataError,
    ParameterError,
    ReidbenchError,
    UnknownNameError,
)
from reidbench.models.base import NormalisedInput
from reidbench.models.card import ModelCard
from reidbench.models.checkpoints import (
    ForeignCheckpointError,
    foreign_checkpoint_message,
    guess_torchreid_arch,
    load_into,
    read_tool_checkpoint,
    sha256_file,
)

TOOLS = ("torchreid", "fastreid")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_CLASSES = 751  # Market-1501's training identities; only the unused classifier's size
IMPORTED = "imported"
# How to install each tool. fastreid 1.4.0 on PyPI pins torch==1.13.1, which cannot sit beside
# torch>=2.3, so the extra holds only what it imports and fastreid itself goes in without deps.
PIP = {
    "torchreid": "pip install 'reidbench[torchreid]'",
    "fastreid": "pip install 'reidbench[fastreid]' && pip install --no-deps fastreid "
                "(its PyPI release pins torch==1.13.1), or put a fast-reid checkout on PYTHONPATH",
}


class ToolMissingError(ReidbenchError):
    """A peer tool (torchreid, fast-reid) that is not installed or does not import."""


def is_tool_spec(name: str) -> bool:
    """Whether ``name`` is ``torchreid:...`` or ``fastreid:...``."""
    prefix, sep, _ = name.partition(":")
    return bool(sep) and prefix in TOOLS


class ImportedModel(NormalisedInput):
    """Another tool's network behind reidbench's model interface.

    Images enter in [0,1]; ``forward`` normalises them as the tool's test transform does and
    returns the embedding the tool evaluates with. ``card`` says where it came from.
    """

    def __init__(self, net: nn.Module, card: ModelCard) -> None:
        super().__init__()
        self.net = net
        self.set_normalisation(card.mean, card.std)
        self.input_size = tuple(card.input_size)
        self.feat_dim = card.feat_dim
        self.card = card
        self.options: dict[str, Any] = {}

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The tool's own eval forward on normalised ``x``."""
        return self.net(self.normalize(x))



class TorchreidModel(ImportedModel):
    """A torchreid network: normalise, then the model's eval forward (its feature vector)."""


class TorchreidMapModel(TorchreidModel):
    """torchreid's ResNet/OSNet, whose eval forward is ``featuremaps`` -> global average pool ->
    optional ``fc``: the map and the head are exposed for feature-map attacks."""

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.featuremaps(self.normalize(x))  # type: ignore[operator]

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        v = self.net.global_avgpool(fmap)  # type: ignore[operator]
        v = v.view(v.size(0), -1)
        fc = getattr(self.net, "fc", None)
        return fc(v) if fc is not None else v


class FastReIDModel(ImportedModel):
    """A fast-reid meta-architecture: [0,1] images scaled to fast-reid's 0-255 pixels, then its
    own eval forward (which normalises with its ``pixel_mean``/``pixel_std``)."""

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        # preprocess_image normalises in place: it gets a fresh tensor, never the caller's.
        return self.net.preprocess_image(x * 255.0)  # type: ignore[operator]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 255.0)


class FastReIDMapModel(FastReIDModel):
    """fast-reid's ``Baseline``: eval forward is ``heads(backbone(preprocess(x)))``."""

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.backbone(self.normalize(x))  # type: ignore[operator]

    def head(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.net.heads(fmap)  # type: ignore[operator]


# ---------------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------------


def create_tool_model(
    spec: str,
    *,
    checkpoint: str | Path | None = "default",
    device: str | torch.device = "cpu",
    options: dict[str, Any] | None = None,
    **card_overrides: Any,
) -> ImportedModel:
    """``torchreid:ARCH`` or ``fastreid:CONFIG.yml`` with ``checkpoint`` (a path, or None for
    random weights), in eval mode on ``device``. ``card_overrides`` change the card
    (``input_size=``, ``num_classes=`` when there is no checkpoint)."""
    tool, _, what = spec.partition(":")
    if options:
        raise ParameterError(f"model {spec} has no options; drop --model-option for it")
    if not what.strip():
        example = "torchreid:osnet_x1_0" if tool == "torchreid" else "fastreid:configs/Market1501/bagtricks_R50.yml"
        raise ParameterError(f"--model {spec}: name the {tool} model after the colon, e.g. {example}")
    state: dict[str, torch.Tensor] | None = None
    ckpt: Path | None = None
    if checkpoint is not None and checkpoint != "default":
        ckpt = Path(checkpoint).expanduser()
        state, origin, _ = read_tool_checkpoint(ckpt)
        if origin is not None and origin != tool:
            raise ForeignCheckpointError(foreign_checkpoint_message(ckpt, origin, spec, state))
    api = _torchreid_models() if tool == "torchreid" else _fastreid_api()  # the tool must import
    if checkpoint == "default":
        raise CheckpointError(
            f"model {spec} has no weights in reidbench, and reidbench never downloads them: pass the "
            f"{tool} checkpoint with --checkpoint PATH (or checkpoint=None for random weights)"
        )
    if tool == "torchreid":
        model: ImportedModel = _build_torchreid(api, spec, what, state, ckpt, card_overrides)
    else:
        model = _build_fastreid(api, spec, what, state, ckpt, card_overrides)
    return model.to(device).eval()


def _imported_card(spec: str, ckpt: Path | None, tool_line: str, **fields: Any) -> ModelCard:
    sha = sha256_file(ckpt) if ckpt is not None else None
    where = f"{ckpt} (sha256 {sha[:12]}...)" if ckpt is not None and sha else "random initialisation, no checkpoint"
    return ModelCard(
        name=spec,
        recipe="external",
        train_dataset="unknown",
        hyperparams={},
        checkpoint=str(ckpt) if ckpt is not None else None,
        sha256=sha,
        notes=f"{IMPORTED}: {tool_line}; weights: {where}",
        deviations=(
            f"{IMPORTED}: architecture and weights come from {tool_line}; reidbench did not train this model "
            "and knows only what the checkpoint and the tool's defaults say (training set, schedule unknown).",
        ),
        **fields,
    )


def _apply_overrides(card: ModelCard, overrides: dict[str, Any]) -> ModelCard:
    if not overrides:
        return card
    if "input_size" in overrides:
        overrides = {**overrides, "input_size": tuple(overrides["input_size"])}
    try:
        return card.replace(**overrides)
    except TypeError as exc:
        raise ParameterError(f"model {card.name}: {exc}") from None


def _quietly(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a tool's import or constructor without its warnings (Cython notices, deprecations)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _installed(package: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _import_tool(tool: str, module: str) -> Any:
    import importlib

    pip = PIP[tool]
    try:
        return _quietly(importlib.import_module, module)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == tool and not _installed(tool):
            raise ToolMissingError(f"--model {tool}:... needs {tool}, which is not installed; {pip}") from None
        raise ToolMissingError(
            f"--model {tool}:...: {tool} is installed but does not import (missing module {exc.name!r}); {pip}"
        ) from None
    except Exception as exc:  # a tool built for another torch/numpy fails in many ways at import
        first = str(exc).splitlines()[0][:160] if str(exc) else ""
        raise ToolMissingError(
            f"--model {tool}:...: {tool} is installed but does not import ({type(exc).__name__}: {first}); {pip}"
        ) from None


def _torchreid_models() -> Any:
    tr = _import_tool("torchreid", "torchreid")
    models = getattr(tr, "models", None)
    build = getattr(models, "build_model", None)
    if build is None:
        raise ToolMissingError(f"--model torchreid:...: this torchreid has no torchreid.models.build_model; {PIP['torchreid']}")
    return models


def _build_torchreid(models: Any, spec: str, arch: str, state: dict[str, torch.Tensor] | None, ckpt: Path | None,
                     overrides: dict[str, Any]) -> ImportedModel:  # fmt: skip
    available = sorted(getattr(models, "__model_factory", {}) or [])
    if available and arch not in available:
        from difflib import get_close_matches

        near = get_close_matches(arch, available, n=1)
        hint = f"; did you mean {near[0]}?" if near else ""
        raise UnknownNameError(f"torchreid has no model {arch!r}{hint} Its models: {', '.join(available)}")
    num_classes = int(overrides.get("num_classes", DEFAULT_CLASSES))
    if state is not None and "classifier.weight" in state:
        num_classes = int(state["classifier.weight"].shape[0])
    try:
        net = _quietly(models.build_model, arch, num_classes=num_classes, loss="softmax", pretrained=False, use_gpu=False)
    except KeyError:
        raise UnknownNameError(f"torchreid has no model {arch!r}; see torchreid.models.show_avai_models()") from None
    if state is not None:
        try:
            load_into(net, state, source=f"torchreid checkpoint {ckpt} for {arch}")
        except CheckpointError as exc:
            guess = guess_torchreid_arch(state)
            if guess is None or guess == arch:
                raise
            raise CheckpointError(f"torchreid checkpoint {ckpt} is not a {arch}: its layers look like {guess}; "
                                  f"use --model torchreid:{guess}. {exc}") from None  # fmt: skip
    feat_dim = int(getattr(net, "feature_dim", 0) or 0)
    card = _imported_card(
        spec, ckpt, f"torchreid {arch} (KaiyangZhou/deep-person-reid)",
        method=f"torchreid {arch}",
        paper="Zhou & Xiang, Torchreid: A Library for Deep Learning Person Re-Identification in Pytorch, arXiv:1910.10093",
        code="KaiyangZhou/deep-person-reid",
        backbone=arch, input_size=(256, 128), feat_dim=feat_dim, num_classes=num_classes,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, pooling="avg", distance="euclidean",
    )  # fmt: skip
    card = _apply_overrides(card, {k: v for k, v in overrides.items() if k != "num_classes"})
    card = card.replace(num_classes=num_classes)
    exposes_map = (type(net).__name__ in ("ResNet", "OSNet") and type(net).__module__.startswith("torchreid")
                   and callable(getattr(net, "featuremaps", None)) and hasattr(net, "global_avgpool"))  # fmt: skip
    cls = TorchreidMapModel if exposes_map else TorchreidModel
    return cls(net, card)


def _fastreid_api() -> tuple[Any, Any]:
    config = _import_tool("fastreid", "fastreid.config")
    modeling = _import_tool("fastreid", "fastreid.modeling")
    return config.get_cfg, modeling.build_model


def _build_fastreid(api: tuple[Any, Any], spec: str, config: str, state: dict[str, torch.Tensor] | None,
                    ckpt: Path | None, overrides: dict[str, Any]) -> ImportedModel:  # fmt: skip
    get_cfg, build_model = api
    path = Path(config).expanduser()
    if not path.is_file():
        raise DataError(f"--model {spec}: fast-reid config {path} not found; pass the .yml it was trained with")
    cfg = get_cfg()
    try:
        _quietly(cfg.merge_from_file, str(path))
    except Exception as exc:  # yacs raises KeyError/AssertionError/yaml errors for a bad config
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise DataError(f"--model {spec}: cannot read fast-reid config {path}: {first}") from None
    cfg.MODEL.BACKBONE.PRETRAIN = False  # never download ImageNet weights
    cfg.MODEL.BACKBONE.PRETRAIN_PATH = ""
    cfg.MODEL.WEIGHTS = ""  # --checkpoint decides the weights
    cfg.MODEL.DEVICE = "cpu"
    if state is not None and "heads.weight" in state:
        cfg.MODEL.HEADS.NUM_CLASSES = int(state["heads.weight"].shape[0])
    elif "num_classes" in overrides:
        cfg.MODEL.HEADS.NUM_CLASSES = int(overrides["num_classes"])
    elif int(cfg.MODEL.HEADS.NUM_CLASSES) <= 0:
        cfg.MODEL.HEADS.NUM_CLASSES = DEFAULT_CLASSES
    try:
        net = _quietly(build_model, cfg)
    except KeyError as exc:
        raise ParameterError(f"--model {spec}: fast-reid cannot build this config: {exc}") from None
    if state is not None:
        own = net.state_dict()
        # fast-reid before 1.3 saved its (now non-persistent) pixel_mean/pixel_std buffers
        state = {k: v for k, v in state.items() if k in own or k not in ("pixel_mean", "pixel_std")}
        load_into(net, state, source=f"fast-reid checkpoint {ckpt} for {path.name}")
    m = cfg.MODEL
    mean = tuple(float(v) / 255.0 for v in m.PIXEL_MEAN)
    std = tuple(float(v) / 255.0 for v in m.PIXEL_STD)
    size = tuple(int(v) for v in cfg.INPUT.SIZE_TEST)
    depth = getattr(m.BACKBONE, "DEPTH", "")
    arch = f"{m.META_ARCHITECTURE} {m.BACKBONE.NAME.removeprefix('build_').removesuffix('_backbone')} {depth}".strip()
    feat_dim = int(m.HEADS.EMBEDDING_DIM) if int(getattr(m.HEADS, "EMBEDDING_DIM", 0) or 0) > 0 else int(m.BACKBONE.FEAT_DIM)
    metric = str(getattr(cfg.TEST, "METRIC", "cosine")).lower()
    datasets = ",".join(cfg.DATASETS.NAMES) if getattr(cfg, "DATASETS", None) is not None else ""
    card = _imported_card(
        spec, ckpt, f"fast-reid {arch} from {path} (JDAI-CV/fast-reid)",
        method=f"fast-reid {arch}",
        paper="He et al., FastReID: A Pytorch Toolbox for General Instance Re-identification, arXiv:2006.02631",
        code="JDAI-CV/fast-reid",
        backbone=f"{m.BACKBONE.NAME.removeprefix('build_').removesuffix('_backbone')} {depth}".strip(),
        input_size=size, feat_dim=feat_dim, num_classes=int(m.HEADS.NUM_CLASSES),
        mean=mean, std=std, pooling=str(getattr(m.HEADS, "POOL_LAYER", "avg")),
        distance="cosine" if metric == "cosine" else "euclidean",
    )  # fmt: skip
    if datasets:
        card = card.replace(train_dataset=f"{datasets} (per the config; unverified)")
    card = _apply_overrides(card, {k: v for k, v in overrides.items() if k != "num_classes"})
    baseline = getattr(_import_tool("fastreid", "fastreid.modeling.meta_arch"), "Baseline", None)
    decomposable = baseline is not None and isinstance(net, baseline)  # eval: heads(backbone(preprocess(x)))
    return (FastReIDMapModel if decomposable else FastReIDModel)(net, card)
