"""Gradient-masking telemetry of the gradient attacks (read by the sanity check ``gradient-masking``)."""

from __future__ import annotations

from typing import Any

import torch


class GradStats:
    """Gradient-masking telemetry, accumulated over every batch of a cell.

    Per attack step: the fraction of exactly-zero gradient entries, the fraction of images whose
    whole gradient is zero, and the mean |g|. A gradient that vanishes (a defense that masks
    gradients, SMA without its random start) shows up here instead of as a "robust" model.
    """

    def __init__(self) -> None:
        self.zero: list[float] = []
        self.zero_images: list[float] = []
        self.abs_sum: list[float] = []
        self.entries: list[int] = []
        self.images: list[int] = []
        self.no_objective = 0  # images the attack had nothing to push against (e.g. no guide)

    def add(self, step: int, g: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Record one step's gradient; rows where ``active`` is False are left out (and counted
        once, at step 0): an image without any guide has no loss, not a masked gradient."""
        while len(self.zero) <= step:
            for acc in (self.zero, self.zero_images, self.abs_sum, self.entries, self.images):
                acc.append(0)
        if active is not None:
            active = active.to(g.device).bool()
            if step == 0:
                self.no_objective += int((~active).sum())
            g = g[active]
        flat = g.detach().flatten(1)
        self.zero[step] += int((flat == 0).sum())
        self.zero_images[step] += int((flat == 0).all(dim=1).sum())
        self.abs_sum[step] += float(flat.abs().sum(dtype=torch.float64))
        self.entries[step] += flat.numel()
        self.images[step] += flat.shape[0]

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per-step lists, plus the overall zero fraction and the smallest mean |g|."""
        zero = [z / max(n, 1) for z, n in zip(self.zero, self.entries, strict=True)]
        zimg = [z / max(n, 1) for z, n in zip(self.zero_images, self.images, strict=True)]
        mean_abs = [s / max(n, 1) for s, n in zip(self.abs_sum, self.entries, strict=True)]
        total = sum(self.entries)
        return {
            "grad_steps": len(zero),
            "grad_zero_frac": sum(self.zero) / total if total else None,
            "grad_zero_image_frac": sum(self.zero_images) / sum(self.images) if total else None,
            "grad_mean_abs_min": min(mean_abs) if mean_abs else None,
            "grad_no_objective_images": self.no_objective,
            "grad_zero_frac_per_step": zero,
            "grad_zero_image_frac_per_step": zimg,
            "grad_mean_abs_per_step": mean_abs,
        }
