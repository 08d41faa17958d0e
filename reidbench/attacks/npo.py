"""FED's non-pedestrian-occlusion (NPO) paste, used as a realistic test-time occlusion.

Paper: Zhikang Wang et al., "Feature Erasing and Diffusion Network for Occluded Person
Re-Identification", CVPR 2022 (Sec. 3.1, "NPO Augmentation Strategy").
Code: ZacharyWang-007/FED-Occluded-ReID (``RandomErasing_Background`` in ``datasets/preprocessing.py``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import functional as TF

from reidbench import ops
from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import InputAttack, register_attack
from reidbench.params import check_area, check_range

CROP_AREA = (0.1, 0.4)  # of the donor image
TALL = 2.0  # crop height / width above which it becomes a side strip (FED's code; the paper says 3)


def _uniform(gen: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=gen))


def _randint(gen: torch.Generator, lo: int, hi: int) -> int:
    """An integer in [lo, hi], both included."""
    return int(torch.randint(lo, hi + 1, (1,), generator=gen))


@register_attack(
    "npo",
    family=Family.OCCLUSION,
    threat=Threat(
        Access.NONE, budget=Budget.AREA,
        scope="a crop of another image of the attacked set is pasted as a strip at one of the four corners "
        "(occluded fraction set by area, or FED's 1/4-1/2)",
    ),
    description="FED-style NPO occlusion: a jittered crop of another image pasted as a corner strip",
)
class NPO(InputAttack):
    r"""FED's NPO augmentation ("Feature Erasing and Diffusion Network for Occluded Person
    Re-Identification", CVPR 2022, Sec. 3.1), used at test time as a realistic occlusion.

    Per image, from a generator seeded by (seed, image index):

    1. an occluder: a crop (area U(0.1, 0.4) of the donor, aspect U(0.3, 1/0.3): the ops
       sampler) of a donor image drawn from ``context.occluder_bank``;
    2. a colour jitter (brightness, contrast and saturation factors U(1 - jitter, 1 + jitter))
       and a horizontal flip with p = 0.5;
    3. a tall crop (height / width > 2) becomes a side strip of full height and width
       U(W/4, W/2); any other crop a top or bottom strip of full width and height U(H/4, H/2).
       A given ``area`` fixes the strip's width (side) or height (top/bottom) to ``area`` of the
       image's, so the occluded fraction is exactly ``area``;
    4. the strip is resized (bicubic, antialiased) and pasted at one of the four corners.

    Threat model: no knowledge of the model; not eps-bounded. Budget: the occluded fraction.

    The occluder source: FED cuts its occlusion set by hand (30 background and object patches
    from the training images). That cannot be done honestly for every dataset a user brings, so
    the occluders are crops of other images of the attacked set: background, objects and parts
    of other people, i.e. a mix of non-pedestrian and non-target-pedestrian occlusion that
    matches the dataset's own appearance. The harness puts a seeded sample of the attacked set
    in ``context.occluder_bank`` (``uses_occluder_bank``); a user with FED's patches can pass
    those instead (each patch is then cropped again, as FED's own random crop does).

    Arguments:
        model (nn.Module): the attacked model (only checked for eval mode).
        area (float | None): occluded fraction 0.01-0.9, or None for FED's 1/4-1/2 of the
            height or width. (Default: None)
        jitter (float): colour-jitter strength, 0-1. (Default: 0.5, FED's brightness, contrast
            and saturation 0.5)

    Deviations from the paper/code:
        * The occluder source (above).
        * Every strip is colour-jittered, as the paper says; FED's code jitters only the
          horizontal ones. Jitter is applied in a fixed order (brightness, contrast, saturation).
        * The tall/wide threshold is FED's code's 2, not the paper's 3.
        * Applied to every image (probability 1), not with p = 0.5; no occlusion mask is produced
          (that is for FED's OEM, which the benchmark does not need).
    """

    uses_occluder_bank = True

    def __init__(self, model: nn.Module, area: float | None = None, jitter: float = 0.5) -> None:
        super().__init__(model, area=area, jitter=jitter)
        check_area(self.name, area)
        check_range(self.name, "jitter", jitter, 0.0, 1.0)
        self.area, self.jitter = area, float(jitter)

    def occluder(self, bank: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, bool]:
        """A jittered, randomly flipped crop of a random bank image, and whether it is tall."""
        donor = bank[_randint(gen, 0, bank.shape[0] - 1)]
        r = ops.sample_region(donor.shape[-2], donor.shape[-1], gen, CROP_AREA)
        ys, xs = r.slices()
        crop = donor[:, ys, xs].float()
        j = self.jitter
        crop = TF.adjust_brightness(crop, _uniform(gen, 1 - j, 1 + j))
        crop = TF.adjust_contrast(crop, _uniform(gen, 1 - j, 1 + j))
        crop = TF.adjust_saturation(crop, _uniform(gen, 1 - j, 1 + j))
        if float(torch.rand(1, generator=gen)) < 0.5:
            crop = crop.flip(-1)
        return crop, r.height / r.width > TALL

    def perturb(self, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        bank = self.context_tensor("occluder_bank", images)
        if not torch.is_floating_point(bank):  # uint8 images as the loaders give them
            bank = bank.to(images.dtype) / 255
        out = images.clone()
        h, w = images.shape[-2:]
        for i, gen in enumerate(self.generators(index)):
            crop, tall = self.occluder(bank, gen)
            if tall:
                ph, pw = h, (max(1, round(self.area * w)) if self.area is not None else _randint(gen, w // 4, w // 2))
            else:
                ph, pw = (max(1, round(self.area * h)) if self.area is not None else _randint(gen, h // 4, h // 2)), w
            corner = _randint(gen, 0, 3)
            top = 0 if corner < 2 else h - ph
            left = 0 if corner % 2 == 0 else w - pw
            patch = F.interpolate(crop[None], size=(ph, pw), mode="bicubic", align_corners=False, antialias=True)
            out[i, :, top : top + ph, left : left + pw] = patch[0].clamp(0.0, 1.0).to(out)
        return out
