"""Non-target-pedestrian (NTP) occlusion: another identity's pedestrian in front of the target.

Paper: Zhikang Wang et al., "Feature Erasing and Diffusion Network for Occluded Person
Re-Identification", CVPR 2022 (Fig. 1(c), "Non-Target Pedestrians"; Sec. 1 and 3.2).
Code: ZacharyWang-007/FED-Occluded-ReID.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import InputAttack, register_attack
from reidbench.errors import ParameterError
from reidbench.params import check_area


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi], both included."""
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


@register_attack(
    "ntp",
    family=Family.OCCLUSION,
    threat=Threat(
        Access.NONE,
        knows="the identities of the attacked images and of its donor images, only to exclude donors of the "
        "target's identity",
        budget=Budget.AREA,
        scope="the full-height middle strip of an image of another identity of the attacked set (where its "
        "pedestrian stands) is pasted over the left or right side (occluded fraction set by area, or 1/4-1/2)",
    ),
    description="FED-style non-target-pedestrian occlusion: another identity's pedestrian over one side of the target",
)
class NTP(InputAttack):
    r"""A non-target pedestrian standing in front of the target, as in FED's Fig. 1(c)
    ("Feature Erasing and Diffusion Network for Occluded Person Re-Identification", CVPR 2022):
    a person of another identity covers one side of the target, at full height.

    Per image, from a generator seeded by (seed, image index):

    1. a donor: an image of ``context.occluder_bank`` whose identity (``context.occluder_pids``)
       is neither the target's nor a distractor or junk box (pid <= 0), drawn uniformly; a donor
       of another size is first resized to the image's (bicubic, antialiased);
    2. a width: ``area`` x W (rounded, at least 1 pixel), or U(W/4, W/2) when ``area`` is None
       (the width of FED's vertical NPO strips);
    3. a horizontal flip of the donor with p = 0.5, and a side, left or right, with p = 0.5;
    4. the donor's middle strip of that width (re-ID boxes are centred on their pedestrian) is
       pasted at full height flush with that side. The occluded fraction is the width over W,
       i.e. ``area`` up to rounding.

    Threat model: no knowledge of the model; not eps-bounded. It is given the identities of the
    attacked images and of the donor images (``uses_labels``), and uses them only to refuse a
    donor of the target's own identity, which would add the target's appearance rather than
    occlude it. Budget: the occluded fraction.

    The donors: the harness's occluder bank, a seeded sample of the attacked set (for a query
    attack, other queries: people from the evaluated split), with their pids. If no image of
    another identity is in the bank, the attack stops with one line rather than paste the
    target's own identity.

    Arguments:
        model (nn.Module): the attacked model (only checked for eval mode).
        area (float | None): occluded fraction 0.01-0.9 (the strip's share of the width), or
            None for U(1/4, 1/2). (Default: None)

    Deviations from the paper/code:
        * FED defines no NTP attack: Fig. 1(c) shows real multi-pedestrian images, and FED
          simulates NTP in feature space (FDM) because pasting people at image level "can
          destroy the globality of the original images" and needs care with the aspect ratio.
          This attack pastes at image level, keeping the aspect ratio (no resize when the donor
          has the image's size) and the donor's own background inside the strip (no person
          segmentation).
        * The occluder stands at the same scale as the target (same box height), not closer or
          further away.
    """

    uses_labels = True
    uses_occluder_bank = True

    def __init__(self, model: nn.Module, area: float | None = None) -> None:
        super().__init__(model, area=area)
        check_area(self.name, area)
        self.area = area

    def perturb(self, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        labels = self.check_labels(labels, images.shape[0]).cpu()
        bank = self.context_tensor("occluder_bank", images)
        if not torch.is_floating_point(bank):  # uint8 images as the loaders give them
            bank = bank.to(images.dtype) / 255
        if self.context.occluder_pids is None:
            raise ParameterError(f"{self.name}: the harness did not provide context.occluder_pids, the identities "
                                 "of the occluder bank, which this attack needs to exclude the target's identity")  # fmt: skip
        donor_pids = torch.as_tensor(self.context.occluder_pids).reshape(-1).cpu()
        if donor_pids.numel() != bank.shape[0]:
            raise ParameterError(f"{self.name}: context.occluder_pids has {donor_pids.numel()} identities for "
                                 f"{bank.shape[0]} occluder images")  # fmt: skip
        out = images.clone()
        h, w = images.shape[-2:]
        for i, gen in enumerate(self.generators(index)):
            target = int(labels[i])
            eligible = torch.nonzero((donor_pids != target) & (donor_pids > 0)).flatten()
            if eligible.numel() == 0:
                raise ParameterError(f"{self.name}: the occluder bank holds no image of an identity other than "
                                     f"{target} (image {int(index[i])}); NTP never pastes the target's own identity")  # fmt: skip
            donor = bank[int(eligible[_randint(gen, 0, eligible.numel() - 1)])]
            if tuple(donor.shape[-2:]) != (h, w):
                donor = F.interpolate(donor[None], size=(h, w), mode="bicubic", align_corners=False,
                                      antialias=True)[0].clamp(0.0, 1.0)  # fmt: skip
            width = max(1, round(self.area * w)) if self.area is not None else _randint(gen, max(1, w // 4), max(1, w // 2))
            if float(torch.rand(1, generator=gen)) < 0.5:
                donor = donor.flip(-1)
            right = float(torch.rand(1, generator=gen)) < 0.5
            src = (w - width) // 2
            left = w - width if right else 0
            out[i, :, :, left : left + width] = donor[:, :, src : src + width].to(out)
        return out
