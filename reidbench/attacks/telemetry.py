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
        # per step; counts and sums stay on the gradient's device (tensors) until summary(), so
        # recording a step never waits for the device (no host synchronisation in the step loop)
        self.zero: list[Any] = []
        self.zero_images: list[Any] = []
        self.abs_sum: list[Any] = []
        self.entries: list[int] = []
        self.images: list[int] = []
        self.no_objective: Any = 0  # images the attack had nothing to push against (e.g. no guide)

    def add(self, step: int, g: torch.Tensor, active: torch.Tensor | None = None) -> None:
        """Record one step's gradient; rows where ``active`` is False are left out (and counted
        once, at step 0): an image without any guide has no loss, not a masked gradient."""
        while len(self.zero) <= step:
            for acc in (self.zero, self.zero_images, self.abs_sum, self.entries, self.images):
                acc.append(0)
        if active is not None:
            active = active.to(g.device).bool()
            if step == 0:
                self.no_objective = self.no_objective + (~active).sum()
            g = g[active]
        flat = g.detach().flatten(1)
        self.zero[step] = self.zero[step] + (flat == 0).sum()
        self.zero_images[step] = self.zero_images[step] + (flat == 0).all(dim=1).sum()
        # float64 tensor additions round exactly as the Python float additions they replace
        self.abs_sum[step] = self.abs_sum[step] + flat.abs().sum(dtype=torch.float64)
        self.entries[step] += flat.numel()
        self.images[step] += flat.shape[0]

    def settle(self) -> GradStats:
        """Turn the device-side accumulators into Python numbers (one synchronisation), e.g. before
        sending the stats to another process; returns ``self``."""
        self.zero = [int(z) for z in self.zero]
        self.zero_images = [int(z) for z in self.zero_images]
        self.abs_sum = [float(v) for v in self.abs_sum]
        self.no_objective = int(self.no_objective)
        return self

    def summary(self) -> dict[str, Any]:
        """JSON-ready: per-step lists, plus the overall zero fraction and the smallest mean |g|."""
        zeros = [int(z) for z in self.zero]  # the one host synchronisation, at the end
        zero_images = [int(z) for z in self.zero_images]
        abs_sum = [float(s) for s in self.abs_sum]
        zero = [z / max(n, 1) for z, n in zip(zeros, self.entries, strict=True)]
        zimg = [z / max(n, 1) for z, n in zip(zero_images, self.images, strict=True)]
        mean_abs = [s / max(n, 1) for s, n in zip(abs_sum, self.entries, strict=True)]
        total = sum(self.entries)
        return {
            "grad_steps": len(zero),
            "grad_zero_frac": sum(zeros) / total if total else None,
            "grad_zero_image_frac": sum(zero_images) / sum(self.images) if total else None,
            "grad_mean_abs_min": min(mean_abs) if mean_abs else None,
            "grad_no_objective_images": int(self.no_objective),
            "grad_zero_frac_per_step": zero,
            "grad_zero_image_frac_per_step": zimg,
            "grad_mean_abs_per_step": mean_abs,
        }
