"""Random resize and pad (R&P).

Xie, Wang, Zhang, Ren and Yuille, "Mitigating Adversarial Effects Through Randomization",
ICLR 2018 (arXiv:1711.01991); code: github.com/cihangxie/NIPS2017_adv_challenge_defense.

The paper resizes a 299x299 image to rnd x rnd, rnd ~ U{299, ..., 330}, then pads it with zeros to
331x331 at a random offset (a ~ U{0..331-rnd} on the left, b on top). Here the same ratios are
scaled to a (H, W) re-ID input:

* the padded canvas is ``Hmax x Wmax = round(H * max_scale) x round(W * max_scale)``
  (``max_scale = 1.107``, the paper's 331/299 to four digits, by default; at least one pixel
  larger than the input);
* the height is drawn uniformly from {H, ..., Hmax - 1} and the width follows it so the aspect
  ratio is kept, ``round(h * W / H)``, as the paper's square-to-square resize keeps it;
* the image is placed at a uniform random offset on a ``pad_value`` canvas;
* the canvas is resized back to (H, W) (bilinear, antialiased), because a re-ID model needs its
  input size.

**Random** (one draw per image per forward, from the defense's generator) and **differentiable**
(nearest resize, padding and bilinear resize all have gradients). The adaptive attacker uses
**EOT**: average the gradient over many draws (Athalye et al. 2018 broke the defense this way).

Deviations from the paper/code:

* The final resize back to the input size is ours (Xie et al. feed 331x331 to an Inception
  network that accepts any size). It is a fixed downscale by about 0.9.
* The paper draws one (rnd, a, b) per batch; here every image gets its own draw, which averages
  better over a query set and makes an image's result independent of its batch-mates' draws
  (though still dependent on its position in the sequence of draws).
* The README gives rnd in [310, 331) while the paper gives [299, 331); this follows the paper.
  The pad value is unstated in the paper; the NIPS-2017 reimplementations use 0 (here: default)
  or 0.5 (Athalye et al.); it is a parameter.
* Resize mode ``nearest`` follows the challenge reimplementations; ``bilinear`` is a parameter.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from reidbench.defenses.base import (
    Defense,
    check_choice,
    check_float,
    register_defense,
    round_half_up,
)

MODES = ("nearest", "bilinear", "bicubic")


@register_defense(
    "resize-pad",
    random=True,
    differentiable=True,
    description="Xie et al. 2018: random upscale to [1, 331/299) x input, random zero pad, resize back",
)
class ResizePad(Defense):
    """Random resize (up to ``max_scale``) and random padding, then back to the input size.

    Args:
        max_scale: the padded canvas over the input size (the paper's 331/299 = 1.107).
        mode: interpolation of the random resize.
        pad_value: the canvas colour in [0,1].
        input_size: the model's (H, W); other input sizes are refused if given.
        seed: seeds the draws; ``reseed`` restarts them.
    """

    def __init__(
        self,
        max_scale: float = 1.107,
        mode: str = "nearest",
        pad_value: float = 0.0,
        *,
        input_size: tuple[int, int] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(input_size=input_size, seed=seed)
        self.max_scale = check_float(self.name, "max_scale", max_scale, 1.0, 2.0, lo_open=True)
        self.mode = check_choice(self.name, "mode", mode, MODES)
        self.pad_value = check_float(self.name, "pad_value", pad_value, 0.0, 1.0)

    def canvas(self, h: int, w: int) -> tuple[int, int]:
        return max(h + 1, round_half_up(h * self.max_scale)), max(w + 1, round_half_up(w * self.max_scale))

    def draw(self, h: int, w: int) -> tuple[int, int, int, int]:
        """One (height, width, top, left) from the generator."""
        ch, cw = self.canvas(h, w)
        rh = int(torch.randint(h, ch, (1,), generator=self.generator))
        rw = min(cw, max(w, round_half_up(rh * w / h)))
        top = int(torch.randint(0, ch - rh + 1, (1,), generator=self.generator))
        left = int(torch.randint(0, cw - rw + 1, (1,), generator=self.generator))
        return rh, rw, top, left

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        ch, cw = self.canvas(h, w)
        out = []
        for img in x.split(1):
            rh, rw, top, left = self.draw(h, w)
            kw = {} if self.mode == "nearest" else {"align_corners": False}
            small = F.interpolate(img, size=(rh, rw), mode=self.mode, **kw)
            if self.mode == "bicubic":
                small = small.clamp(0.0, 1.0)
            out.append(F.pad(small, (left, cw - rw - left, top, ch - rh - top), value=self.pad_value))
        canvas = torch.cat(out)
        return F.interpolate(canvas, size=(h, w), mode="bilinear", align_corners=False, antialias=True).clamp(0.0, 1.0)
