"""IGOAS-like recipe: incremental generative occlusion with adversarial suppression.

Paper: Zhao et al., "Incremental Generative Occlusion Adversarial Suppression Network for Person
ReID", IEEE TIP 2021. Code: Vill-Lab/2021-TIP-IGOAS. The card, with what is kept from the
original and what is not, is in ``reidbench.models.igoas``.

* Incremental generative occlusion on a copy of the batch: one rectangle per batch, area
  fraction 0.1 + 0.4 * e / 90 (e = the epoch on the paper's 90-epoch scale), capped at 1/3 from
  epoch 55, aspect ratio U(0.5, 1), filled with a random constant per channel.
* Adversarial suppression: with a = the channel mean of the occluded copy's feature map and m the
  visibility mask (1 where the image is not occluded) resized to the map, the loss MSE(a, a*m),
  weight 1, which drives the activation inside the occluded area to zero.
* The clean and the occluded copy go through the one shared backbone and head, each with the
  baseline's loss.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from reidbench.models.base import TrainOutput
from reidbench.ops import Region
from reidbench.train.registry import register_recipe
from reidbench.train.trainer import Recipe, TrainContext, reid_loss


def occlusion_area(epoch: int, epochs: int, paper_epochs: int = 90) -> float:
    """The occluded fraction at ``epoch`` of ``epochs``, on the paper's 90-epoch schedule."""
    e = epoch * paper_epochs / max(epochs, 1)
    if e >= 55:
        return 1.0 / 3.0
    return 0.1 + 0.4 * e / paper_epochs


def sample_occlusion(h: int, w: int, area: float, gen: torch.Generator) -> Region:
    """A rectangle of ``area`` fraction with aspect ratio (h/w) U(0.5, 1), inside the image."""
    r = 0.5 + 0.5 * torch.rand(1, generator=gen).item()
    rh = min(h, max(1, int(round(math.sqrt(area * h * w * r)))))
    rw = min(w, max(1, int(round(area * h * w / rh))))
    top = int(torch.randint(0, h - rh + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - rw + 1, (1,), generator=gen))
    return Region(top, left, rh, rw)


@register_recipe
class IGOASRecipe(Recipe):
    """Baseline loss on the clean and the occluded copy, plus the suppression loss."""

    name = "igoas"

    def __init__(self, suppression_weight: float = 1.0, paper_epochs: int = 90, **hparams: Any) -> None:
        super().__init__(suppression_weight=suppression_weight, paper_epochs=paper_epochs, **hparams)
        self.weight = suppression_weight
        self.paper_epochs = paper_epochs

    def occlude(self, x: torch.Tensor, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The occluded copy and its visibility mask (B-independent: one rectangle per batch)."""
        h, w = x.shape[-2:]
        r = sample_occlusion(h, w, occlusion_area(ctx.epoch, ctx.cfg.epochs, self.paper_epochs), ctx.gen)
        fill = torch.rand(3, generator=ctx.gen).to(x.device, x.dtype).view(1, 3, 1, 1)
        ys, xs = r.slices()
        occ = x.clone()
        occ[:, :, ys, xs] = fill
        visible = torch.ones(1, 1, h, w, device=x.device, dtype=x.dtype)
        visible[:, :, ys, xs] = 0.0
        return occ, visible

    def step(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        opt = ctx.optimizers[0]
        m = ctx.model
        occ, visible = self.occlude(x, ctx)
        out = m.forward_train(torch.cat([x, occ]))
        b = x.shape[0]
        clean_out, occ_out = _split(out, b)
        loss_id = reid_loss(clean_out, y, ctx.cfg) + reid_loss(occ_out, y, ctx.cfg)
        a = occ_out.fmap.mean(dim=1, keepdim=True)  # channel mean, (B,1,h,w)
        mask = F.interpolate(visible, size=a.shape[-2:], mode="bilinear", align_corners=False)
        loss_sup = F.mse_loss(a, a * mask)
        loss = loss_id + self.weight * loss_sup
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "sup": loss_sup.item()}


def _split(out: TrainOutput, b: int) -> tuple[TrainOutput, TrainOutput]:
    first = TrainOutput(out.fmap[:b], out.global_feat[:b], out.feat[:b], out.logits[:b])
    second = TrainOutput(out.fmap[b:], out.global_feat[b:], out.feat[b:], out.logits[b:])
    return first, second
