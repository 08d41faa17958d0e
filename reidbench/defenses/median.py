"""Median filter (median smoothing, one of the "feature squeezers").

Xu, Evans and Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural Networks",
NDSS 2018 (arXiv:1704.01155), Sec. 4 "local smoothing". Used here as a preprocessing defense.

Each channel is replaced by its median over a ``kernel_size`` x ``kernel_size`` window, with the
border replicated.

**Deterministic** and **differentiable almost everywhere**: the output is one of the window's
inputs, so its gradient routes to the pixel that is the median (zero for the others). The true
gradient is sparse but not zero, so an adaptive attacker can use plain gradients; BPDA (identity
backward) is the usual, often stronger, alternative and works as well.

Deviations from the paper/code: Xu et al. used scipy's ``median_filter`` (2x2 and 3x3 windows,
``reflect`` borders). Here windows are odd (so the median is one pixel, not an offset window)
and borders are replicated (torch has no half-sample ``reflect`` pad). The window is unfolded,
so memory grows with ``kernel_size**2``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from reidbench.defenses.base import Defense, check_int, register_defense
from reidbench.errors import ParameterError


@register_defense(
    "median",
    random=False,
    differentiable=True,
    description="median filter over a k x k window per channel (Xu et al. 2018, feature squeezing)",
)
class MedianFilter(Defense):
    """Per-channel median over an odd ``kernel_size`` window (3 as Xu et al. on ImageNet)."""

    def __init__(self, kernel_size: int = 3, *, input_size: tuple[int, int] | None = None) -> None:
        super().__init__(input_size=input_size)
        k = check_int(self.name, "kernel_size", kernel_size, 1, 31)
        if k % 2 == 0:
            raise ParameterError(f"defense {self.name}: kernel_size must be odd (the median of an odd window is one pixel), got {k}")
        self.kernel_size = k

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        if k == 1:
            return x
        b, c, h, w = x.shape
        p = k // 2
        padded = F.pad(x.reshape(b * c, 1, h, w), (p, p, p, p), mode="replicate")
        windows = F.unfold(padded, kernel_size=k)  # (b*c, k*k, h*w)
        return windows.median(dim=1).values.reshape(b, c, h, w)
