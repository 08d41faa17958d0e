"""ETNDNet's adversarial representations as test-time feature-map attacks (Fig. 6a).

Paper: Neng Dong, Liyan Zhang, Shuanglin Yan, Hao Tang, Jinhui Tang, "Erasing, Transforming, and
Noising Defense Network for Occluded Person Re-Identification" (Sec. III-B, Eq. 3-4, Fig. 6a).
Code: nengdong96/ETNDNet.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from reidbench import ops
from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import FeatureMapAttack, as_index, register_attack
from reidbench.errors import ParameterError
from reidbench.params import check_choice, check_range

THREAT = Threat(
    Access.INTERNAL,
    "perturbs the backbone's feature map at test time (a stress test of the representation, ETNDNet Fig. 6a)",
    budget=Budget.AREA, scope="one random region per image, area fraction set by area",
)
NOISE_MODES = ("replace", "multiply")


def area_range(who: str, area: float | Sequence[float]) -> tuple[float, float]:
    """``area`` as a (lo, hi) range of the map's area: a number fixes it, a pair is U(lo, hi)."""
    if isinstance(area, (int, float)):
        check_range(who, "area", area, 0.01, 0.6)
        return float(area), float(area)
    bounds = tuple(area)
    if not (len(bounds) == 2 and all(isinstance(a, (int, float)) for a in bounds) and 0.01 <= bounds[0] <= bounds[1] <= 0.6):
        raise ParameterError(f"{who}: area {list(bounds)} is out of range; use a fraction 0.01-0.6 or a pair [lo, hi] "
                             "with 0.01 <= lo <= hi <= 0.6")
    return float(bounds[0]), float(bounds[1])


class _FeatureMapPerturbation(FeatureMapAttack):
    r"""Shared body of the three ETNDNet perturbations (see the registered classes' docstrings).

    Region sampling and the perturbation itself are ``reidbench.ops``' functions, the same ones
    the ETNDNet training recipe calls, so the test-time perturbation is exactly what ETNDNet was
    trained against.

    Region per image, not per batch: ETNDNet's training draws one region for the whole
    mini-batch (which helps convergence). At test time a per-batch region would make the numbers
    depend on the batch size and order, so each image gets its own region from a generator
    seeded by (seed, image index); the distribution of regions is the same.
    """

    kind: ClassVar[str] = ""

    def __init__(self, model: nn.Module | None = None, area: float | Sequence[float] = (0.02, 0.4), **params: Any) -> None:
        super().__init__(model, area=area, **params)
        self.area = area_range(self.name, area)

    def perturb_one(self, f: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return ops.perturb_fmap(f, self.kind, gen, area=self.area)

    def hook(self, fmap: torch.Tensor, index: torch.Tensor | Sequence[int]) -> torch.Tensor:
        idx = as_index(index, fmap.shape[0], self.name)
        return torch.cat([self.perturb_one(fmap[i : i + 1], g) for i, g in enumerate(self.generators(idx))])


@register_attack("fmap-erase", family=Family.FEATURE_MAP, threat=THREAT,
                 description="ETNDNet feature-map erasing: a random region of the map is set to 0")
class FeatureMapErase(_FeatureMapPerturbation):
    r"""ETNDNet's erasing (Eq. 3) at test time: a region of the backbone map is set to 0.

    Region: area fraction U(area) (default U(0.02, 0.4)), aspect U(0.3, 1/0.3), uniform
    position, drawn per image. Arguments: model (a ReIDModel), area (a fraction 0.01-0.6 or a
    [lo, hi] range; default [0.02, 0.4]). Threat model: not an input attack; it measures how the
    representation degrades when part of the map carries no information (ETNDNet Fig. 6a: -20.8
    mAP on their baseline). Deviations from the paper/code: region per image, not per batch.
    """

    kind = "erase"


@register_attack("fmap-transform", family=Family.FEATURE_MAP, threat=THREAT,
                 description="ETNDNet feature-map transforming: one region of the map is copied onto another")
class FeatureMapTransform(_FeatureMapPerturbation):
    r"""ETNDNet's transforming at test time: the content of one region of the map is copied onto
    another region of the same size (position misalignment).

    Regions: size from area fraction U(area) and aspect U(0.3, 1/0.3); two uniform positions;
    drawn per image. Arguments: model, area (default [0.02, 0.4]). Threat model: not an input
    attack (ETNDNet Fig. 6a: -8.6 mAP). Deviations from the paper/code: regions per image, not
    per batch; the two positions may coincide (then the map is unchanged), as in the code.
    """

    kind = "transform"


@register_attack("fmap-noise", family=Family.FEATURE_MAP, threat=THREAT,
                 description="ETNDNet feature-map noising: a random region of the map is replaced by U(0,1) noise")
class FeatureMapNoise(_FeatureMapPerturbation):
    r"""ETNDNet's noising (Eq. 4) at test time: a region of the map is replaced by U(0,1) values.

    Arguments: model, area (default [0.02, 0.4]), noise_mode (``"replace"``, the paper's Eq. 4,
    default; ``"multiply"``, the code's map x U(0,1)). Threat model: not an input attack (ETNDNet
    Fig. 6a: -16.3 mAP). Deviations from the paper/code: region and noise per image, not per
    batch; the paper's ``replace`` by default (the code multiplies).
    """

    kind = "noise"

    def __init__(self, model: nn.Module | None = None, area: float | Sequence[float] = (0.02, 0.4),
                 noise_mode: str = "replace") -> None:
        check_choice("fmap-noise", "noise_mode", noise_mode, NOISE_MODES)
        super().__init__(model, area=area, noise_mode=noise_mode)
        self.noise_mode = noise_mode

    def perturb_one(self, f: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return ops.perturb_fmap(f, self.kind, gen, area=self.area, noise_mode=self.noise_mode)
