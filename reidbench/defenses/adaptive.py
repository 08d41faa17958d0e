"""Attacking and evaluating through a defense: ``Defended``, BPDA and EOT.

Two ways to evaluate an input-transformation defense (Carlini et al., "On Evaluating Adversarial
Robustness", arXiv:1902.06705, 2019; Tramer et al., "On Adaptive Attacks to Adversarial Example
Defenses", NeurIPS 2020, https://arxiv.org/abs/2002.08347), both with :class:`Defended` doing the feature extraction:

* **oblivious**: the attack is made on ``defended.bare()`` (the model without any input
  transform), and features are extracted with ``defended`` (defense, then model);
* **adaptive**: the attack is made on ``Defended(model, defense, bpda=True)`` itself.

**BPDA** (Athalye, Carlini and Wagner, "Obfuscated Gradients Give a False Sense of Security",
ICML 2018, Sec. 4.1). With ``bpda=True`` every *non-differentiable* part ``t`` of the defense runs
straight-through: the forward value is ``t(x)``, the backward is the identity. Differentiable
parts of a chain keep their true gradient. With ``bpda=False`` a non-differentiable part passes
its true gradient, which is zero almost everywhere: the attack then stalls, and the sanity check
``gradient-masking`` says so.

**EOT** (Athalye, Engstrom, Ilyas and Kwok, "Synthesizing Robust Adversarial Examples", ICML 2018).
Every forward of a random defense draws afresh from the defense's generator, so an attack that
calls the model N times per step and averages the gradients is EOT. The metric attacks do this
with their ``eot`` parameter; :func:`eot_gradient` is the same thing as a function, for attack
writers and tests::

    defended = Defended(model, create_defense("resize-pad", input_size=(256, 128)), bpda=True)
    defended.reseed(seed)                          # reproducible draws
    g = eot_gradient(lambda z: loss(defended(z)), x, n=10)

**Evaluating a random defense** takes several draws (the sanity check ``draws`` flags one): for
draw ``i`` call ``defended.reseed(draw_seed(cell_seed, i))``, extract the features (gallery and
query), evaluate, then report the mean and the worst case over draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from reidbench.defenses.base import Defense, DefenseChain
from reidbench.ops import eot_gradient
from reidbench.seeding import draw_seed

__all__ = ["Defended", "apply_defense", "draw_seed", "eot_gradient", "straight_through"]


def straight_through(t: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``t(x)`` on the forward pass, the identity on the backward pass (BPDA with g(x) = x).

    The value is exactly ``t(x)`` (``x - x.detach()`` is exactly zero), so it stays in [0,1].
    """
    y = t(x).detach()
    return y + (x - x.detach()) if x.requires_grad else y


def apply_defense(defense: Defense, x: torch.Tensor, *, bpda: bool) -> torch.Tensor:
    """Run ``defense`` on ``x``; with ``bpda``, each non-differentiable part is straight-through."""
    parts = list(defense.parts) if isinstance(defense, DefenseChain) else [defense]
    for part in parts:
        x = straight_through(part, x) if bpda and not getattr(part, "differentiable", True) else part(x)
    return x


class Defended(nn.Module):
    """``model(defense(x))``: extract features through a defense, or attack through it.

    Args:
        model: a re-ID model (usually a :class:`~reidbench.models.ReIDModel`); its own
            ``input_transform``, if any, still runs after the defense.
        defense: a registered defense or chain (:func:`~reidbench.defenses.create_defense`).
        bpda: straight-through gradients for the non-differentiable parts (see the module doc).

    The wrapper starts in the model's mode; ``eval()``/``train()``/``to()`` reach the model (and
    the defense, which behaves the same in both modes) as for any submodule. ``bare()`` is the model
    without the defense and without its own input transform (what an oblivious attack targets).
    ``reseed(seed)`` restarts the defense's random draws; every forward draws afresh.
    """

    def __init__(self, model: nn.Module, defense: Defense, *, bpda: bool) -> None:
        super().__init__()
        self.model = model
        self.defense = defense
        self.bpda = bool(bpda)
        self.training = model.training  # the wrapper takes the model's mode; it changes nothing

    @property
    def input_size(self) -> Any:
        return getattr(self.model, "input_size", None)

    @property
    def feat_dim(self) -> Any:
        return getattr(self.model, "feat_dim", None)

    @property
    def random(self) -> bool:
        return self.defense.random

    @property
    def differentiable(self) -> bool:
        """Whether gradients through the defense are its true ones (no BPDA needed)."""
        return self.defense.differentiable

    @property
    def device(self) -> torch.device:
        p = next(self.model.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """The defended input, with BPDA where asked."""
        return apply_defense(self.defense, x, bpda=self.bpda)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(self.transform(x))

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The model's backbone map of the defended input (its own input transform included)."""
        x = self.transform(x)
        own = getattr(self.model, "input_transform", None)
        if own is not None:
            x = own(x)
        return self.model.feature_map(x)  # type: ignore[operator]

    @property
    def head(self) -> nn.Module:
        return self.model.head  # type: ignore[return-value]

    def bare(self) -> nn.Module:
        """The undefended model, without its own input transform either."""
        bare = getattr(self.model, "bare", None)
        return bare() if callable(bare) else self.model

    def reseed(self, seed: int) -> None:
        self.defense.reseed(seed)
