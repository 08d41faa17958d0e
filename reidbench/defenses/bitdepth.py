"""Bit-depth reduction (colour-depth squeezing).

Xu, Evans and Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks",
NDSS 2018 (arXiv:1704.01155), Sec. 4 "color depth": ``x' = round(x * (2^b - 1)) / (2^b - 1)``.

**Deterministic** and **not differentiable**: the map is a staircase, so its true gradient is zero
almost everywhere. The adaptive attacker uses **BPDA** with the identity on the backward pass
(Athalye et al. 2018), which is exact up to the rounding error of at most half a level.

Deviations: none. Xu et al. used 1 bit (MNIST), 5 bits (CIFAR-10) and 4 bits (ImageNet); the
default here is 5, the milder of their two natural-image settings, so clean re-ID accuracy suffers
less; pass ``bits=4`` for their ImageNet setting.
"""

from __future__ import annotations

import torch

from reidbench.defenses.base import Defense, check_int, register_defense


@register_defense(
    "bitdepth",
    random=False,
    differentiable=False,
    description="bit-depth reduction to b bits per channel (Xu et al. 2018, feature squeezing)",
)
class BitDepthReduction(Defense):
    """Round every channel to ``bits`` bits (1-8)."""

    def __init__(self, bits: int = 5, *, input_size: tuple[int, int] | None = None) -> None:
        super().__init__(input_size=input_size)
        self.bits = check_int(self.name, "bits", bits, 1, 8)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        levels = 2**self.bits - 1
        return (x * levels).round().clamp(0, levels) / levels
