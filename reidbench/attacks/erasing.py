"""Test-time random erasing (ETNDNet Fig. 6b; the sampler of Zhong et al.'s random erasing).

Paper: Neng Dong, Liyan Zhang, Shuanglin Yan, Hao Tang, Jinhui Tang, "Erasing, Transforming, and
Noising Defense Network for Occluded Person Re-Identification" (Fig. 6b); code: nengdong96/ETNDNet.
Sampler: Zhong et al., "Random Erasing Data Augmentation", AAAI 2020. https://arxiv.org/abs/1708.04896
"""

from __future__ import annotations

import torch
from torch import nn

from reidbench import ops
from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import InputAttack, mean_colour, register_attack
from reidbench.params import check_area, check_choice

FILLS = ("mean", "random", "zero")
DEFAULT_AREA = (0.02, 0.4)
DEFAULT_ASPECT = (0.3, 1 / 0.3)


def feasible_aspect(area: float, h: int, w: int) -> tuple[float, float]:
    """The part of the aspect range U(0.3, 1/0.3) in which a rectangle of ``area`` fits in h x w.

    With a fixed area, the ops sampler would otherwise retry and, past 100 misses, fall back to
    a quarter of the image: a silent change of the occluded area.
    """
    lo = max(DEFAULT_ASPECT[0], area * h / w * 1.001)
    hi = min(DEFAULT_ASPECT[1], h / (area * w) * 0.999)
    return (lo, hi) if lo <= hi else (area * h / w * 1.001, h / (area * w) * 0.999)


@register_attack(
    "erasing",
    family=Family.OCCLUSION,
    threat=Threat(Access.NONE, budget=Budget.AREA,
                  scope="one random rectangle of the image is erased (its area fraction set by area)"),
    description="random erasing at test time (ETNDNet Fig. 6b): one rectangle per image, random aspect and position",
)
class RandomErasing(InputAttack):
    r"""Random erasing at test time, as in ETNDNet's Fig. 6b ("we randomly erase the query and
    gallery samples"), with the rectangle sampler of random erasing (Zhong et al.).

    Per image, from a generator seeded by (seed, image index): a rectangle with area fraction
    ``area`` (or U(0.02, 0.4) when ``area`` is None), aspect ratio U(0.3, 1/0.3) (narrowed to the
    ratios at which that area fits), and a uniform position, is filled.

    Threat model: no knowledge of the model; not eps-bounded. Which side is erased (query,
    gallery or both) is the harness's choice. Budget: the occluded fraction ``area``.

    Arguments:
        model (nn.Module): the attacked model (eval mode is checked; ``fill="mean"`` reads its
            normalisation mean).
        area (float | None): occluded fraction of the image, 0.01-0.9; None draws U(0.02, 0.4).
            (Default: None)
        fill (str): ``"mean"``: the model's normalisation mean, i.e. zero after normalisation
            (AOS's occlusion, and what a zero-padded feature extractor sees as "nothing");
            ``"random"``: U(0,1) per pixel (Zhong et al.'s variant); ``"zero"``: black.
            (Default: "mean")

    Deviations from the paper/code:
        * ETNDNet does not say how it erases at test time; its training code's random erasing
          fills with a fixed mean colour (0.4914, 0.4822, 0.4465), so ``"mean"`` fills with the
          model's own normalisation mean, the same idea made independent of the dataset.
        * The erasing is applied to every image (probability 1), not with p = 0.5.
        * The rectangle is per image and seeded by its index, not drawn from the global RNG.
    """

    def __init__(self, model: nn.Module, area: float | None = None, fill: str = "mean") -> None:
        super().__init__(model, area=area, fill=fill)
        check_area(self.name, area)
        check_choice(self.name, "fill", fill, FILLS)
        self.area, self.fill = area, fill

    def perturb(self, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        out = images.clone()
        h, w = images.shape[-2:]
        if self.area is None:
            area, aspect = DEFAULT_AREA, DEFAULT_ASPECT
        else:
            area, aspect = (self.area, self.area), feasible_aspect(self.area, h, w)
        colour = (mean_colour(self.model, images) if self.fill == "mean" else images.new_zeros(3)).view(3, 1, 1)
        for i, gen in enumerate(self.generators(index)):
            r = ops.sample_region(h, w, gen, area, aspect)
            ys, xs = r.slices()
            if self.fill == "random":
                out[i, :, ys, xs] = torch.rand((3, r.height, r.width), generator=gen).to(out)
            else:
                out[i, :, ys, xs] = colour
        return out
