"""Uniform random noise in the L-inf ball: the floor any real attack must beat."""

from __future__ import annotations

import torch
from torch import nn

from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import InputAttack, register_attack
from reidbench.params import check_eps


@register_attack(
    "noise",
    family=Family.NOISE,
    threat=Threat(Access.NONE, "(no gradients, no labels, no other images)", budget=Budget.LINF),
    description="uniform random noise U(-eps, eps) per pixel: the baseline an attack must beat",
)
class UniformNoise(InputAttack):
    r"""Uniform random noise in the same L-inf budget as the metric attacks.

    ``x' = clamp(x + u, 0, 1)`` with ``u ~ U(-eps, eps)`` per pixel and channel, drawn from a
    generator seeded by (seed, image index). An attack whose mAP drop is no larger than this
    one's has found nothing.

    Threat model: no knowledge of the model at all. Budget: eps.

    Arguments:
        model (nn.Module): the attacked model (only checked for eval mode).
        eps (float): L-inf budget. (Default: 5/255)

    Deviations from the paper/code: none; this is a control, not a published attack.
    """

    def __init__(self, model: nn.Module, eps: float = 5 / 255) -> None:
        super().__init__(model, eps=eps)
        check_eps(eps, self.name)
        self.eps = eps

    def perturb(self, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        eps = float(self.params["eps"])
        u = torch.stack([torch.rand(images.shape[1:], generator=g) for g in self.generators(index)])
        return (images + (2 * u.to(images) - 1) * eps).clamp(0.0, 1.0)
