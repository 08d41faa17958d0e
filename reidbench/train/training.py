"""Training a registered model end to end: data in, checkpoint and card out.

``train_registered("etndnet", dataset="synthetic-mini")`` builds the model from its card, reads
the dataset, runs the recipe its card names on the shared trainer and writes a safetensors
checkpoint with its card beside it. The embedded default's configuration lives here, in one place, so the
shipped checkpoints can be reproduced with ``reidbench train --model NAME``.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch

from reidbench import __version__
from reidbench.data import load_dataset, relabel
from reidbench.data.images import load_images
from reidbench.models.backbones import build_backbone
from reidbench.models.card import ModelCard
from reidbench.models.checkpoints import save_checkpoint
from reidbench.models.registry import MODELS, build_model
from reidbench.train.registry import create_recipe
from reidbench.train.trainer import TrainConfig, train

log = logging.getLogger(__name__)

# The embedded default (resnet_tiny on synthetic-mini, 2-4 minutes a model on 2 CPU cores): the
# BoT/ETNDNet schedule compressed to 60 epochs, with a higher lr for a from-scratch tiny network.
# 60 epochs is where the learning curve flattens (docs/embedded-default.md: the baseline's mAP goes
# 40.5, 62.6, 70.9, 73.0, 73.3, 73.3 at epochs 10-60); 30 epochs, the earlier default, left every
# model under-trained.
EMBEDDED_CONFIG = TrainConfig(lr=3e-3, triplet_weight=1.0, p=16, k=4).scaled(60)
# Full size (ResNet-50 at 256x128): the paper schedule, 8 ids x 8 images.
FULL_CONFIG = TrainConfig(lr=3.5e-4, triplet_weight=1.0, p=8, k=8)


EMBEDDED_BACKBONES = ("resnet_tiny", "resnet_tiny_wide", "resnet_test")  # 128x64 and the embedded schedule


def default_config(backbone: str) -> TrainConfig:
    return EMBEDDED_CONFIG if backbone in EMBEDDED_BACKBONES else FULL_CONFIG


def train_registered(
    name: str,
    *,
    dataset: str = "synthetic-mini",
    data_root: str | Path | None = None,
    out: str | Path | None = None,
    backbone: str | None = None,
    input_size: tuple[int, int] | None = None,
    config: TrainConfig | None = None,
    recipe_options: dict[str, Any] | None = None,
    imagenet_weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    on_epoch_end: Any = None,
) -> tuple[ModelCard, Path]:
    """Train registered model ``name`` and write ``out`` (.safetensors) with its card.

    ``on_epoch_end(epoch, model, card)`` is called after each epoch (for learning curves).
    """
    entry = MODELS.get(name)
    card = entry.card
    backbone = backbone or card.backbone
    if input_size is None:
        input_size = card.input_size if backbone == card.backbone or backbone in EMBEDDED_BACKBONES else (256, 128)
    cfg = config or default_config(backbone)
    torch.manual_seed(cfg.seed)
    ds = load_dataset(dataset, data_root)
    if not ds.train:
        from reidbench.errors import DataError

        raise DataError(f"dataset {dataset} has no training split; train on another dataset and evaluate on this one")
    samples, _ = relabel(ds.train)
    images = load_images(samples, tuple(input_size), desc=f"{dataset} train")
    labels = torch.tensor([s.pid for s in samples])
    camids = torch.tensor([s.camid for s in samples])
    with torch.random.fork_rng():  # probing the width must not consume the seeded init stream
        feat_dim = build_backbone(backbone)[1]
    card = card.replace(backbone=backbone, input_size=tuple(input_size), feat_dim=feat_dim,
                        num_classes=int(labels.max()) + 1, train_dataset=dataset)  # fmt: skip
    model = build_model(card, imagenet_weights=imagenet_weights)
    recipe = create_recipe(name, **(recipe_options or {}))
    t0 = time.perf_counter()
    hook = None if on_epoch_end is None else (lambda epoch, m: on_epoch_end(epoch, m, card))
    record = train(model, recipe, images, labels, camids, cfg, device=device, progress=progress, on_epoch_end=hook)
    card = card.replace(hyperparams={**dataclasses.asdict(cfg), **recipe.hparams,
                                     "imagenet_init": bool(imagenet_weights)})  # fmt: skip
    out = Path(out) if out is not None else Path("checkpoints") / f"{name}-{dataset}.safetensors"
    extra = {
        "seconds": round(time.perf_counter() - t0, 1),
        "dataset_fingerprint": ds.fingerprint,
        "final_losses": record["history"][-1] if record["history"] else {},
        "reidbench": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
    card = save_checkpoint(model.cpu(), card, out, extra=extra)
    for path in recipe.save_artifacts(out, card):
        log.info("wrote %s", path)
    return card, out
