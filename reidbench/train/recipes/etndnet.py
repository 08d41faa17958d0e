"""ETNDNet's recipe: the min-max game over erased, transformed and noised feature maps.

Paper: Neng Dong, Liyan Zhang, Shuanglin Yan, Hao Tang and Jinhui Tang, "Erasing, Transforming,
and Noising Defense Network for Occluded Person Re-Identification", IEEE Transactions on Circuits
and Systems for Video Technology (TCSVT), 2023, https://doi.org/10.1109/TCSVT.2023.3339167.
Code: https://github.com/nengdong96/ETNDNet. The card is in ``reidbench.models.etndnet``.

Three perturbations of the backbone's feature map, used only during training, each with a region
of area fraction U(0.02, 0.4) and aspect ratio U(0.3, 1/0.3) shared by the whole mini-batch
(``reidbench.ops``, the same functions the test-time feature-map attacks use):
erasing (the region set to 0), transforming (one region copied onto another) and noising.

The min-max game uses two Adam optimisers and two forward passes per iteration:

* classifier step: minimise CE(clean) - l1*CE(erased) - l2*CE(transformed) - l3*CE(noised),
  stepping only the classifier side (pooling, BN neck and the linear layer, as in the code's
  ``Classifier``);
* extractor step: a fresh forward with new regions, minimising
  CE(clean) + l1*CE_e + l2*CE_t + l3*CE_n, stepping only the backbone.

l1 = 0.1, l2 = 0.15, l3 = 0.1. At test time only the clean branch is used.
The ablations of the paper (ED, TD, ND, ETD, END, TND, ETND) are the ``branches`` option.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.nn import functional as F

from reidbench.errors import ParameterError
from reidbench.ops import perturb_fmap
from reidbench.train.registry import register_recipe
from reidbench.train.trainer import Recipe, TrainContext, adam, reid_loss

_CODES = {"E": "erase", "T": "transform", "N": "noise"}


def parse_branches(spec: str) -> tuple[str, ...]:
    """``ETND``, ``ED+TD``, ``E,N`` ... -> the perturbations in E, T, N order."""
    s = spec.upper().replace("D", "").replace("+", "").replace(",", "").replace(" ", "")
    if not s or not re.fullmatch(r"[ETN]+", s):
        raise ParameterError(
            f"ETNDNet branches {spec!r} not understood; use ED, TD, ND or a combination such as ETD, END, TND, ETND"
        )
    return tuple(_CODES[c] for c in "ETN" if c in s)


@register_recipe
class ETNDNetRecipe(Recipe):
    """The ETNDNet min-max game; ``branches`` selects the ablation (default all three)."""

    name = "etndnet"

    def __init__(self, branches: str = "ETND", lambdas: tuple[float, float, float] = (0.1, 0.15, 0.1),
                 noise_mode: str = "replace", **hparams: Any) -> None:
        super().__init__(branches=branches, lambdas=list(lambdas), noise_mode=noise_mode, **hparams)
        self.kinds = parse_branches(branches)
        self.weights = dict(zip(("erase", "transform", "noise"), lambdas, strict=True))
        self.noise_mode = noise_mode

    def optimizers(self, ctx: TrainContext) -> list[torch.optim.Optimizer]:
        m = ctx.model
        classifier_side = list(m.head.parameters()) + list(m.classifier.parameters())
        return [adam(m.backbone.parameters(), ctx.cfg), adam(classifier_side, ctx.cfg)]

    def _branch_losses(self, fmap: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> dict[str, torch.Tensor]:
        out = {}
        for kind in self.kinds:
            pert = perturb_fmap(fmap, kind, ctx.gen, noise_mode=self.noise_mode)
            logits = ctx.model.forward_from_map(pert).logits
            out[kind] = F.cross_entropy(logits, y, label_smoothing=ctx.cfg.label_smoothing)
        return out

    def step(self, x: torch.Tensor, y: torch.Tensor, ctx: TrainContext) -> dict[str, float]:
        opt_extractor, opt_classifier = ctx.optimizers
        m = ctx.model
        # classifier step: the classifier side learns to fail on perturbed maps (the "max" player)
        with torch.no_grad():
            fmap = m.feature_map(x)
        clean = m.forward_from_map(fmap)
        adv = self._branch_losses(fmap, y, ctx)
        loss_c = reid_loss(clean, y, ctx.cfg) - sum(self.weights[k] * v for k, v in adv.items())
        opt_classifier.zero_grad(set_to_none=True)
        loss_c.backward()
        opt_classifier.step()
        # extractor step: fresh forward, new regions; the backbone learns to defeat the perturbations
        fmap = m.feature_map(x)
        clean = m.forward_from_map(fmap)
        adv = self._branch_losses(fmap, y, ctx)
        loss_e = reid_loss(clean, y, ctx.cfg) + sum(self.weights[k] * v for k, v in adv.items())
        opt_extractor.zero_grad(set_to_none=True)
        opt_classifier.zero_grad(set_to_none=True)
        loss_e.backward()
        opt_extractor.step()
        return {"loss": loss_e.item(), "cls": loss_c.item(), **{k[:2]: v.item() for k, v in adv.items()}}
