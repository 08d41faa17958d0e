"""One trainer shared by every recipe.

The trainer owns what all re-ID recipes share: the P x K identity sampler, the standard
augmentation (flip, pad-and-crop, random erasing), the learning-rate schedule (linear warm-up,
then steps), seeding, the progress bar and the checkpoint. A :class:`Recipe` is the strategy that
plugs in: it may build its own optimisers, add a batch augmentation, and define the training step
(ETNDNet's min-max game, IGOAS's suppression loss, adversarial training's attack). Recipes are
registered by name (``reidbench.train.registry``); a model's card names the recipe that trains it.

Training is deterministic under ``TrainConfig.seed`` on CPU: all randomness is drawn from
generators seeded from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from reidbench.models.base import ReIDModel, TrainOutput
from reidbench.models.card import ModelCard
from reidbench.ops import sample_region

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings. The defaults are the BoT/ETNDNet schedule scaled to ``epochs``."""

    epochs: int = 120
    p: int = 16  # identities per batch
    k: int = 4  # images per identity
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    warmup_epochs: float = 10
    milestones: tuple[float, ...] = (40, 70)
    gamma: float = 0.1
    label_smoothing: float = 0.1
    triplet_weight: float = 0.0  # 0 = CE only; 1.0 adds the batch-hard triplet loss
    margin: float = 0.3
    flip: bool = True
    pad: int = 10  # at 256 px height; scaled with the input height
    erasing_p: float = 0.5
    seed: int = 0
    iters_per_epoch: int | None = None

    def scaled(self, epochs: int) -> TrainConfig:
        """The same schedule compressed or stretched to ``epochs`` (warm-up and steps in proportion)."""
        f = epochs / self.epochs
        return TrainConfig(**{**asdict(self), "epochs": epochs, "warmup_epochs": self.warmup_epochs * f,
                              "milestones": tuple(m * f for m in self.milestones)})  # fmt: skip


@dataclass
class TrainContext:
    """What a recipe sees during training."""

    cfg: TrainConfig
    model: ReIDModel
    images: torch.Tensor  # (N,3,H,W) uint8, the whole training split
    labels: torch.Tensor  # (N,) 0..C-1
    camids: torch.Tensor
    num_classes: int
    device: torch.device
    gen: torch.Generator  # recipe randomness (on CPU)
    epoch: int = 0
    step: int = 0
    optimizers: list[torch.optim.Optimizer] = field(default_factory=list)
    log: Callable[[str], None] = log.info


class Recipe:
    """A training strategy. Subclasses override what differs from the plain BNNeck baseline.

    * ``prepare(ctx)``: runs once before training (AOS's first stage and sensitivity search).
    * ``optimizers(ctx)``: the optimisers (default: one Adam over all parameters).
    * ``pre_augment(x, idx, ctx)`` / ``augment(x, idx, ctx)``: batch augmentations before and after
      the standard one (``idx`` indexes the training split, so a recipe can use per-image state).
    * ``step(x, y, ctx)``: one optimisation step; returns named scalar losses for the progress bar.
    * ``hparams``: recorded on the model card.

    A subclass sets ``name`` and is registered with ``@register_recipe``; a model card whose
    ``recipe`` is that name trains with it.
    """

    name = "baseline"

    def __init__(self, **hparams: Any) -> None:
        self.hparams: dict[str, Any] = dict(hparams)

    def prepare(self, ctx: TrainContext) -> None:
        del ctx

    def optimizers(self, ctx: TrainContext) -> list[torch.optim.Optimizer]:
        return [adam(ctx.model.parameters(), ctx.cfg)]

    def pre_augment(self, x: torch.Tensor, idx: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        del idx, ctx
        return x

    def augment(self, x: torch.Tensor, idx: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        del idx, ctx
        return x

    def loss(self, out: TrainOutput, y: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        return reid_loss(out, y, ctx.cfg)

    def save_artifacts(self, checkpoint: Path, card: ModelCard) -> list[Path]:
        """Files besides the checkpoint that training made (APD's MPG-Net generator), written
        beside ``checkpoint`` after it; returns their paths. None by default."""
        del checkpoint, card
        return []

    def step(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        opt = ctx.optimizers[0]
        out = ctx.model.forward_train(x)
        loss = self.loss(out, y, ctx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item()}


def adam(params: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam([p for p in params if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)


def triplet_hard(feat: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Batch-hard triplet loss (Hermans et al.) on euclidean distances."""
    d = torch.cdist(feat, feat).clamp(min=1e-12)
    same = y.view(-1, 1) == y.view(1, -1)
    hardest_pos = (d * same).max(dim=1).values
    hardest_neg = d.masked_fill(same, float("inf")).min(dim=1).values
    return F.relu(hardest_pos - hardest_neg + margin).mean()


def reid_loss(out: TrainOutput, y: torch.Tensor, cfg: TrainConfig, logits: torch.Tensor | None = None) -> torch.Tensor:
    """CE with label smoothing on the BN-neck logits, plus the optional triplet on the pre-BN feature."""
    loss = F.cross_entropy(out.logits if logits is None else logits, y, label_smoothing=cfg.label_smoothing)
    if cfg.triplet_weight > 0:
        loss = loss + cfg.triplet_weight * triplet_hard(out.global_feat, y, cfg.margin)
    return loss


def pk_batches(labels: torch.Tensor, p: int, k: int, gen: torch.Generator) -> list[torch.Tensor]:
    """One epoch of P x K batches: each identity's images shuffled, cut into groups of K."""
    groups: list[torch.Tensor] = []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        if len(idx) < k:  # too few images: repeat some
            idx = torch.cat([idx, idx[torch.randint(len(idx), (k - len(idx),), generator=gen)]])
        for s in range(0, len(idx) - k + 1, k):
            groups.append(idx[s : s + k])
    order = torch.randperm(len(groups), generator=gen).tolist()
    batches, cur, seen = [], [], set()
    for gi in order:
        lab = int(labels[groups[gi][0]])
        if lab in seen:  # an identity at most once per batch: skip this group for this epoch
            continue
        cur.append(groups[gi])
        seen.add(lab)
        if len(cur) == p:
            batches.append(torch.cat(cur))
            cur, seen = [], set()
    return batches


def standard_augment(x: torch.Tensor, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Flip, pad-then-crop and random erasing (p=0.5, area 0.02-0.4, fill = ImageNet mean)."""
    b, _, h, w = x.shape
    if cfg.flip:
        flip = torch.rand(b, generator=gen) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(3), x)
    pad = int(round(cfg.pad * h / 256))
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).tolist()
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen).tolist()
        x = torch.stack([xp[i, :, oy[i] : oy[i] + h, ox[i] : ox[i] + w] for i in range(b)])
    if cfg.erasing_p > 0:
        x = random_erasing(x, cfg.erasing_p, gen)
    return x


_MEAN = (0.4914, 0.4822, 0.4465)  # BoT's erasing fill


def random_erasing(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    x = x.clone()
    fill = torch.tensor(_MEAN, device=x.device, dtype=x.dtype).view(3, 1, 1)
    for i in range(x.shape[0]):
        if torch.rand(1, generator=gen).item() < p:
            ys, xs = sample_region(x.shape[2], x.shape[3], gen).slices()
            x[i, :, ys, xs] = fill
    return x


def lr_factor(epoch_f: float, cfg: TrainConfig) -> float:
    """Linear warm-up from 1% to 100% over ``warmup_epochs``, then x``gamma`` at each milestone."""
    if epoch_f < cfg.warmup_epochs:
        return 0.01 + 0.99 * epoch_f / max(cfg.warmup_epochs, 1e-9)
    return cfg.gamma ** sum(epoch_f >= m for m in cfg.milestones)


def train(
    model: ReIDModel,
    recipe: Recipe,
    images: torch.Tensor,
    labels: torch.Tensor,
    camids: torch.Tensor,
    cfg: TrainConfig,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    on_epoch_end: Callable[[int, ReIDModel], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place with ``recipe``; returns a training record (losses, seconds).

    ``on_epoch_end(epoch, model)`` is called after each epoch (1-based), for learning curves: it
    may evaluate or save ``model``, and the model is put back in train mode after it returns.
    """
    from reidbench.progress import bar as tqdm

    device = torch.device(device)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model.to(device).train()
    num_classes = int(labels.max()) + 1
    ctx = TrainContext(cfg=cfg, model=model, images=images, labels=labels, camids=camids,
                       num_classes=num_classes, device=device, gen=gen)  # fmt: skip
    recipe.prepare(ctx)
    model.to(device).train()
    ctx.optimizers = recipe.optimizers(ctx)
    base_lrs = [[g["lr"] for g in o.param_groups] for o in ctx.optimizers]
    t0 = time.perf_counter()
    history: list[dict[str, float]] = []
    epoch_batches = pk_batches(labels, cfg.p, cfg.k, gen)
    iters = cfg.iters_per_epoch or len(epoch_batches)
    bar = tqdm(total=cfg.epochs * iters, desc=f"train {recipe.name}", unit="it", disable=not progress, leave=False)
    for epoch in range(cfg.epochs):
        ctx.epoch = epoch
        running: dict[str, float] = {}
        for it in range(iters):
            if not epoch_batches:
                epoch_batches = pk_batches(labels, cfg.p, cfg.k, gen)
            idx = epoch_batches.pop(0)
            f = lr_factor(epoch + it / iters, cfg)
            for o, lrs in zip(ctx.optimizers, base_lrs, strict=True):
                for g, lr in zip(o.param_groups, lrs, strict=True):
                    g["lr"] = lr * f
            x = images[idx].to(device).float().div_(255.0)
            y = labels[idx].to(device)
            x = recipe.pre_augment(x, idx, ctx)
            x = standard_augment(x, cfg, gen)
            x = recipe.augment(x, idx, ctx)
            losses = recipe.step(x, y, ctx)
            ctx.step += 1
            for k, v in losses.items():
                running[k] = running.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()}, refresh=False)
        epoch_batches = pk_batches(labels, cfg.p, cfg.k, gen)
        history.append({k: v / iters for k, v in running.items()})
        if on_epoch_end is not None:
            with torch.random.fork_rng(devices=[]):  # a callback must not move the training streams
                on_epoch_end(epoch + 1, model)
            model.train()
    bar.close()
    model.eval()
    return {"seconds": round(time.perf_counter() - t0, 1), "history": history, "config": asdict(cfg),
            "recipe": recipe.name, "hparams": recipe.hparams}  # fmt: skip


def freeze_bn_bias(model: nn.Module) -> None:
    """BNNeck's bias stays frozen even when a recipe re-creates parameters groups."""
    for m in model.modules():
        if hasattr(m, "bnneck"):
            m.bnneck.bias.requires_grad_(False)
