"""JAD's recipe: the proactive half of the joint adversarial defense, a training augmentation.

Paper: Yunpeng Gong, Liqing Huang and Lifei Chen, "Person Re-identification Method Based on Color
Attack and Joint Defence" (the LTA attack and the JAD defense), CVPR Workshops 2022,
https://arxiv.org/abs/2111.09571. Code: https://github.com/finger-monkey/LTA_and_joint-defence.
The card and the passive half (circuitous scaling at inference) are in ``reidbench.models.jad``.

The augmentation is drawn per image with p ~ U(0, 1):

=========  ===============================================================
p < 0.05   full grayscale
p < 0.06   channel fusion (CF) with the gray image
p < 0.07   channel fusion with the sketch image
p < 0.12   an AutoAugment-like op (posterize, equalize, solarize, contrast, invert)
p < 0.22   LHT: one of the above applied to the whole image, then one random rectangle
           (area U(0.02, 0.4), aspect U(0.3, 1/0.3)) of it pasted onto the original
otherwise  unchanged
=========  ===============================================================

CF (paper Sec. 3.2.1): 1 or 2 of the R, G, B channels are kept, the rest are filled with the gray
(or sketch) channel, and the three channels are put in random order. The sketch is the colour
dodge of the gray image with its blurred inverse (27x27 Gaussian).
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as TF

from reidbench.ops import grayscale, sample_region, sketch
from reidbench.train.registry import register_recipe
from reidbench.train.trainer import Recipe, TrainContext

# cumulative thresholds of the per-image draw
P_GRAY, P_CF_GRAY, P_CF_SKETCH, P_AUGMENT, P_LHT = 0.05, 0.06, 0.07, 0.12, 0.22


def channel_fusion(x: torch.Tensor, other: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One image (3,H,W): keep 1 or 2 RGB channels, fill the rest with ``other`` (1,H,W), shuffle."""
    n_keep = 1 + int(torch.randint(0, 2, (1,), generator=gen))
    keep = torch.randperm(3, generator=gen)[:n_keep].tolist()
    chans = [x[c] for c in keep] + [other[0]] * (3 - n_keep)
    order = torch.randperm(3, generator=gen).tolist()
    return torch.stack([chans[i] for i in order])


def augment_op(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One AutoAugment-like op on an image (3,H,W) in [0,1], chosen uniformly."""
    k = int(torch.randint(0, 5, (1,), generator=gen))
    u8 = (x * 255).round().to(torch.uint8)
    if k == 0:
        out = TF.posterize(u8, bits=int(torch.randint(2, 5, (1,), generator=gen)))
    elif k == 1:
        out = TF.equalize(u8)
    elif k == 2:
        out = TF.solarize(u8, threshold=int(torch.randint(96, 224, (1,), generator=gen)))
    elif k == 3:
        factor = 0.3 + 1.4 * torch.rand(1, generator=gen).item()
        return TF.adjust_contrast(x, factor).clamp(0, 1)
    else:
        out = TF.invert(u8)
    return out.float() / 255.0


def homogeneous(x: torch.Tensor, kind: int, gen: torch.Generator) -> torch.Tensor:
    """The homogeneous transforms of JAD: 0 gray, 1 CF-gray, 2 CF-sketch, 3 augment."""
    g = grayscale(x.unsqueeze(0))[0]
    if kind == 0:
        return g.expand(3, -1, -1).clone()
    if kind == 1:
        return channel_fusion(x, g, gen)
    if kind == 2:
        return channel_fusion(x, sketch(x.unsqueeze(0))[0], gen)
    return augment_op(x, gen)


def jad_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """JAD's proactive augmentation on a batch (B,3,H,W) in [0,1]; shapes and range are kept."""
    out = x.clone()
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        p = torch.rand(1, generator=gen).item()
        if p < P_GRAY:
            out[i] = homogeneous(x[i], 0, gen)
        elif p < P_CF_GRAY:
            out[i] = homogeneous(x[i], 1, gen)
        elif p < P_CF_SKETCH:
            out[i] = homogeneous(x[i], 2, gen)
        elif p < P_AUGMENT:
            out[i] = homogeneous(x[i], 3, gen)
        elif p < P_LHT:
            t = homogeneous(x[i], int(torch.randint(0, 4, (1,), generator=gen)), gen)
            ys, xs = sample_region(h, w, gen).slices()
            out[i, :, ys, xs] = t[:, ys, xs]
    return out.clamp_(0.0, 1.0)


@register_recipe
class JADRecipe(Recipe):
    """The baseline's training with JAD's proactive augmentation on the raw images."""

    name = "jad"

    def pre_augment(self, x: torch.Tensor, idx: torch.Tensor, ctx: TrainContext) -> torch.Tensor:
        del idx
        return jad_augment(x, ctx.gen)
