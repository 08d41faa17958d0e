"""Image and feature-map operations shared by training recipes, attacks and defenses.

* Region sampling as in random erasing (Zhong et al.) and ETNDNet: area fraction U(0.02, 0.4),
  aspect ratio U(0.3, 1/0.3), retried until the rectangle fits.
* ETNDNet's feature-map perturbations: erasing, transforming (copying one region onto another)
  and noising. ETNDNet's recipe and the feature-map attacks use the same functions, so a test-time
  perturbation is exactly what the defense was trained against.
* Grayscale, sketch and local grayscale (LGT), used by JAD's augmentation and the LTA attack.

All functions take and return float tensors; images are (B, 3, H, W) in [0,1].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch.nn import functional as F


class Region(NamedTuple):
    top: int
    left: int
    height: int
    width: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def sample_size(h: int, w: int, gen: torch.Generator, area: tuple[float, float] = (0.02, 0.4),
                aspect: tuple[float, float] = (0.3, 1 / 0.3), tries: int = 100) -> tuple[int, int]:
    """A (height, width) with area fraction U(area) and aspect ratio U(aspect) that fits in h x w."""
    for _ in range(tries):
        a = (area[0] + (area[1] - area[0]) * torch.rand(1, generator=gen).item()) * h * w
        r = aspect[0] + (aspect[1] - aspect[0]) * torch.rand(1, generator=gen).item()
        rh, rw = int(round(math.sqrt(a * r))), int(round(math.sqrt(a / r)))
        if 0 < rh <= h and 0 < rw <= w and (rh < h or rw < w):
            return rh, rw
    return max(1, h // 2), max(1, w // 2)


def sample_region(h: int, w: int, gen: torch.Generator, area: tuple[float, float] = (0.02, 0.4),
                  aspect: tuple[float, float] = (0.3, 1 / 0.3)) -> Region:
    """A random rectangle inside an h x w grid (the random-erasing / ETNDNet sampler)."""
    rh, rw = sample_size(h, w, gen, area, aspect)
    top = int(torch.randint(0, h - rh + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - rw + 1, (1,), generator=gen))
    return Region(top, left, rh, rw)


def region_mask(h: int, w: int, r: Region, device: torch.device | None = None) -> torch.Tensor:
    m = torch.zeros(h, w, device=device)
    ys, xs = r.slices()
    m[ys, xs] = 1.0
    return m


# ---------------------------------------------------------------------------------------------
# ETNDNet feature-map perturbations (one region for the whole batch, as in the paper)
# ---------------------------------------------------------------------------------------------


def fmap_erase(f: torch.Tensor, r: Region) -> torch.Tensor:
    """ETNDNet Eq. 3: the region is set to 0."""
    out = f.clone()
    ys, xs = r.slices()
    out[:, :, ys, xs] = 0.0
    return out


def fmap_transform(f: torch.Tensor, src: Region, dst: Region) -> torch.Tensor:
    """ETNDNet "transforming": the content of ``src`` is copied onto ``dst`` (same size)."""
    assert (src.height, src.width) == (dst.height, dst.width)
    out = f.clone()
    sy, sx = src.slices()
    dy, dx = dst.slices()
    out[:, :, dy, dx] = f[:, :, sy, sx]
    return out


def fmap_noise(f: torch.Tensor, r: Region, gen: torch.Generator, mode: str = "replace") -> torch.Tensor:
    """ETNDNet Eq. 4. ``replace`` (the paper): U(0,1) values; ``multiply`` (the code): x U(0,1)."""
    out = f.clone()
    ys, xs = r.slices()
    u = torch.rand((f.shape[0], f.shape[1], r.height, r.width), generator=gen).to(f.device, f.dtype)
    if mode == "replace":
        out[:, :, ys, xs] = u
    elif mode == "multiply":
        out[:, :, ys, xs] = f[:, :, ys, xs] * u
    else:
        raise ValueError(f"noise mode must be 'replace' or 'multiply', not {mode!r}")
    return out


def sample_transform_pair(h: int, w: int, gen: torch.Generator, area: tuple[float, float] = (0.02, 0.4)) -> tuple[Region, Region]:
    rh, rw = sample_size(h, w, gen, area)
    pick = lambda: Region(int(torch.randint(0, h - rh + 1, (1,), generator=gen)),  # noqa: E731
                          int(torch.randint(0, w - rw + 1, (1,), generator=gen)), rh, rw)
    return pick(), pick()


def perturb_fmap(f: torch.Tensor, kind: str, gen: torch.Generator, *, area: tuple[float, float] = (0.02, 0.4),
                 noise_mode: str = "replace") -> torch.Tensor:
    """One ETNDNet perturbation (``erase``, ``transform`` or ``noise``) with a fresh region."""
    h, w = f.shape[-2:]
    if kind == "erase":
        return fmap_erase(f, sample_region(h, w, gen, area))
    if kind == "transform":
        return fmap_transform(f, *sample_transform_pair(h, w, gen, area))
    if kind == "noise":
        return fmap_noise(f, sample_region(h, w, gen, area), gen, noise_mode)
    raise ValueError(f"unknown feature-map perturbation {kind!r}")


# ---------------------------------------------------------------------------------------------
# Colour operations (JAD, LTA)
# ---------------------------------------------------------------------------------------------

_GRAY = (0.299, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) -> (B,1,H,W) luminance."""
    w = torch.tensor(_GRAY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: float | None = None) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding; sigma as in OpenCV's default for the size."""
    if sigma is None:
        sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    k = torch.arange(kernel, device=x.device, dtype=x.dtype) - (kernel - 1) / 2
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    g = g / g.sum()
    c = x.shape[1]
    pad = kernel // 2
    ph = min(pad, x.shape[2] - 1)
    pw = min(pad, x.shape[3] - 1)
    y = F.pad(x, (pw, pw, 0, 0), mode="reflect") if pw > 0 else x
    y = F.conv2d(y, g[pad - pw : pad + pw + 1].view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    y = F.pad(y, (0, 0, ph, ph), mode="reflect") if ph > 0 else y
    return F.conv2d(y, g[pad - ph : pad + ph + 1].view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def sketch(x: torch.Tensor, kernel: int = 27) -> torch.Tensor:
    """JAD's sketch: gray g, blurred inverse b, then the colour dodge g*256/(255-b), in [0,1]."""
    g = grayscale(x) * 255.0
    b = gaussian_blur(255.0 - g, kernel)
    return (g * 256.0 / (255.0 - b).clamp(min=1.0)).clamp(0.0, 255.0) / 255.0


def local_grayscale(x: torch.Tensor, gen: torch.Generator, area: tuple[float, float] = (0.02, 0.4)) -> torch.Tensor:
    """LGT: each image gets its own random rectangle replaced by its grayscale version."""
    out = x.clone()
    g = grayscale(x).expand(-1, 3, -1, -1)
    h, w = x.shape[-2:]
    for i in range(x.shape[0]):
        ys, xs = sample_region(h, w, gen, area).slices()
        out[i, :, ys, xs] = g[i, :, ys, xs]
    return out


# ---------------------------------------------------------------------------------------------
# Sliding-window occlusion (AOS): the training-set sensitivity search and the worst-case attack
# ---------------------------------------------------------------------------------------------


def window_grid(h: int, w: int, side: int, stride: int) -> tuple[list[int], list[int]]:
    """Top and left coordinates of a square of ``side`` slid with ``stride`` (last one flush)."""
    def axis(n: int) -> list[int]:
        pos = list(range(0, max(n - side, 0) + 1, max(stride, 1)))
        if pos[-1] != max(n - side, 0):
            pos.append(max(n - side, 0))
        return pos

    return axis(h), axis(w)


def occlusion_sweep(
    images: torch.Tensor,
    side: int,
    stride: int,
    fill: torch.Tensor,
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    chunk: int = 512,
) -> torch.Tensor:
    """Score every position of a ``side`` square over each image; returns (B, gh, gw).

    ``score(occluded, owner)`` gets a batch of occluded images and, for each, the index of the
    image it came from, and returns one score per occluded image (higher = more damaging).
    ``fill`` is the square's colour, (3,) in [0,1].
    """
    b, _, h, w = images.shape
    tops, lefts = window_grid(h, w, side, stride)
    masks = torch.zeros(len(tops) * len(lefts), 1, h, w, device=images.device, dtype=images.dtype)
    for k, (t, lf) in enumerate((t, lf) for t in tops for lf in lefts):
        masks[k, :, t : t + side, lf : lf + side] = 1.0
    n_pos = masks.shape[0]
    f = fill.to(images.device, images.dtype).view(1, 3, 1, 1)
    total = b * n_pos
    out = torch.empty(total, device=images.device)
    for s in range(0, total, chunk):
        flat = torch.arange(s, min(s + chunk, total), device=images.device)
        owner, p = flat // n_pos, flat % n_pos
        m = masks[p]
        occ = images[owner] * (1 - m) + f * m
        out[s : s + len(flat)] = score(occ, owner)
    return out.view(b, len(tops), len(lefts))


def blur3x3(maps: torch.Tensor) -> torch.Tensor:
    """A 3x3 box blur of (B, gh, gw) score maps with replicate padding (AOS smooths its maps so)."""
    x = F.pad(maps.unsqueeze(1), (1, 1, 1, 1), mode="replicate")
    return F.avg_pool2d(x, 3, stride=1).squeeze(1)


def eot_gradient(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n: int) -> torch.Tensor:
    """The gradient of ``fn(x).sum()`` with respect to ``x``, averaged over ``n`` evaluations.

    ``fn`` is evaluated afresh each time, so a random defense inside it draws afresh: this is EOT
    (Athalye et al., "Synthesizing Robust Adversarial Examples", ICML 2018). With a deterministic
    ``fn`` it equals the plain gradient. Summing a per-image loss keeps the images' gradients
    separate (each image's loss depends only on that image). The metric attacks' ``eot`` and the
    adaptive evaluation of defenses both use this one function.
    """
    if isinstance(n, bool) or int(n) != n or n < 1:
        from reidbench.errors import ParameterError

        raise ParameterError(f"eot: the number of samples must be a positive integer, got {n!r}")
    x = x.detach().requires_grad_(True)
    total = torch.zeros_like(x)
    for _ in range(int(n)):
        (g,) = torch.autograd.grad(fn(x).sum(), x, allow_unused=True)
        if g is not None:
            total += g
    return total / n
