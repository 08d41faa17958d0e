"""AOS's recipe: train the baseline, search each image's most harmful occlusion, retrain with it.

Paper: Houjing Huang, Dangwei Li, Zhang Zhang, Xiaotang Chen and Kaiqi Huang, "Adversarially
Occluded Samples for Person Re-identification", CVPR 2018,
https://openaccess.thecvf.com/content_cvpr_2018/html/Huang_Adversarially_Occluded_Samples_CVPR_2018_paper.html.
Code: https://github.com/huanghoujing/AOS4ReID. The card is in ``reidbench.models.aos``.

Three stages, all run by ``reidbench train --model aos``:

1. train the baseline (or reuse one: recipe option ``stage1_checkpoint``);
2. slide a square (side sqrt(0.1*H*W), filled with the mean colour, i.e. zero after
   normalisation) over every training image; score each position by the drop in the probability
   of the true class, and blur each score map 3x3;
3. retrain from scratch, replacing each sample with p = 0.5 by its occluded version: the
   ``sampling`` variant draws a position with probability proportional to its (positive) score,
   the ``hard1`` variant takes the argmax, and the paper's ``random`` ablation (its Table 1)
   draws a position uniformly, with the same square and probability and no search.

The same sliding-window search, scored by the embedding's drop in similarity, is the test-time
``aos-window`` attack.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import torch
from torch.nn import functional as F

from reidbench.errors import ParameterError
from reidbench.ops import blur3x3, occlusion_sweep, window_grid
from reidbench.train.recipes.baseline import BaselineRecipe
from reidbench.train.registry import register_recipe
from reidbench.train.trainer import Recipe, TrainContext, train

log = logging.getLogger(__name__)


def sensitivity_maps(model: Any, images: torch.Tensor, labels: torch.Tensor, side: int, stride: int,
                     device: torch.device, batch: int = 64) -> torch.Tensor:
    """AOS stage 2: per image, the drop in true-class probability at each square position, blurred 3x3."""
    from reidbench.progress import bar as tqdm

    model.eval()
    fill = model.mean.view(3).detach()
    maps = []
    with torch.no_grad():
        for s in tqdm(range(0, len(images), batch), desc="AOS sensitivity search", unit="batch", leave=False):
            x = images[s : s + batch].to(device).float().div_(255.0)
            y = labels[s : s + batch].to(device)
            p_clean = F.softmax(model.forward_train(x).logits, dim=1).gather(1, y.view(-1, 1)).squeeze(1)

            def score(occ: torch.Tensor, owner: torch.Tensor, y: torch.Tensor = y, p_clean: torch.Tensor = p_clean) -> torch.Tensor:
                p = F.softmax(model.forward_train(occ).logits, dim=1).gather(1, y[owner].view(-1, 1)).squeeze(1)
                return p_clean[owner] - p

            maps.append(blur3x3(occlusion_sweep(x, side, stride, fill, score)).cpu())
    return torch.cat(maps)


@register_recipe
class AOSRecipe(Recipe):
    """Baseline, sensitivity search, then retraining with adversarially occluded samples."""

    name = "aos"

    def __init__(self, variant: str = "sampling", p: float = 0.5, area: float = 0.1, stride_at_256: float = 10.0,
                 stage1_checkpoint: str | None = None, **hparams: Any) -> None:
        if variant not in ("sampling", "hard1", "random"):
            raise ParameterError(f"AOS variant must be 'sampling', 'hard1' or 'random', not {variant!r}")
        super().__init__(variant=variant, p=p, area=area, stride_at_256=stride_at_256,
                         stage1_checkpoint=stage1_checkpoint, **hparams)  # fmt: skip
        self.variant, self.p, self.area, self.stride_at_256 = variant, p, area, stride_at_256
        self.stage1_checkpoint = stage1_checkpoint
        self.maps: torch.Tensor | None = None

    def prepare(self, ctx: TrainContext) -> None:
        h, w = ctx.images.shape[-2:]
        self.side = max(1, int(round(math.sqrt(self.area * h * w))))
        self.stride = max(1, int(round(self.stride_at_256 * h / 256)))
        self.tops, self.lefts = window_grid(h, w, self.side, self.stride)
        self.fill = ctx.model.mean.view(3).detach().cpu()
        if self.variant == "random":  # the paper's Random ablation: no model, no search
            self.maps = torch.zeros(len(ctx.images), len(self.tops), len(self.lefts))
            return
        stage1 = copy.deepcopy(ctx.model)
        if self.stage1_checkpoint:
            from reidbench.models.checkpoints import load_into, read_state_dict

            load_into(stage1, read_state_dict(self.stage1_checkpoint), source=self.stage1_checkpoint)
        else:
            ctx.log("AOS stage 1: training the baseline")
            train(stage1, BaselineRecipe(), ctx.images, ctx.labels, ctx.camids, ctx.cfg, device=ctx.device)
        ctx.log("AOS stage 2: occlusion sensitivity search over the training set")
        self.maps = sensitivity_maps(stage1.to(ctx.device), ctx.images, ctx.labels, self.side, self.stride, ctx.device)
        del stage1

    def pre_augment(self, x: torch.Tensor, idx: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        assert self.maps is not None, "prepare() runs the sensitivity search first"
        out = x.clone()
        fill = self.fill.to(x.device, x.dtype).view(3, 1, 1)
        gw = len(self.lefts)
        for j, i in enumerate(idx.tolist()):
            if torch.rand(1, generator=ctx.gen).item() >= self.p:
                continue
            scores = self.maps[i].flatten()
            if self.variant == "hard1":
                k = int(scores.argmax())
            elif self.variant == "random":
                k = int(torch.randint(len(scores), (1,), generator=ctx.gen))
            else:
                weights = scores.clamp(min=0) + 1e-8
                k = int(torch.multinomial(weights, 1, generator=ctx.gen))
            t, lf = self.tops[k // gw], self.lefts[k % gw]
            out[j, :, t : t + self.side, lf : lf + self.side] = fill
        return out
