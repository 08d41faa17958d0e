"""JPEG compression.

Dziugaite, Ghahramani and Roy, "A study of the effect of JPG compression on adversarial images",
arXiv:1608.00853, 2016; Guo, Rana, Cisse and van der Maaten, "Countering Adversarial Images
using Input Transformations", ICLR 2018 (quality 75, the default here).

Each image is rounded to 8 bits, encoded with PIL's libjpeg at ``quality`` (PIL's defaults
otherwise: standard tables, 4:2:0 chroma subsampling) and decoded.

**Deterministic** and **not differentiable**: rounding and the quantisation of the DCT
coefficients make the map piecewise constant, so its true gradient is zero almost everywhere
(``forward`` returns that zero gradient). The adaptive attacker uses **BPDA**: the real JPEG on
the forward pass, the identity on the backward pass (Athalye et al. 2018; Shin and Song's
differentiable JPEG is the other route, not implemented).

Deviations: none from the papers' description; the codec is whatever libjpeg PIL ships, so the
last bits may differ from other encoders. It runs on the CPU, one image at a time.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from reidbench.defenses.base import Defense, check_int, register_defense


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the same image after JPEG encoding and decoding."""
    buf = io.BytesIO()
    Image.fromarray(img, mode="RGB").save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB"))


@register_defense(
    "jpeg",
    random=False,
    differentiable=False,
    description="JPEG compression at a given quality (Dziugaite et al. 2016; Guo et al. 2018), via PIL",
)
class JPEGCompression(Defense):
    """JPEG encode/decode each image at ``quality`` (1-100; 75 as Guo et al.)."""

    def __init__(self, quality: int = 75, *, input_size: tuple[int, int] | None = None) -> None:
        super().__init__(input_size=input_size)
        self.quality = check_int(self.name, "quality", quality, 1, 100)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            u8 = (x.detach().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
            out = np.stack([jpeg_roundtrip(np.ascontiguousarray(im), self.quality) for im in u8])
            y = torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype) / 255.0
        return y
