"""A synthetic person re-ID dataset, written in the Market-1501 layout.

Real re-ID datasets cannot be downloaded on the machines this project is built on, so the
embedded default is generated. It is made to behave like the real thing in the ways that matter
for a robustness benchmark:

* identities are drawn from small palettes, so many of them share clothing colours and differ
  only in pattern, bag, hair, shoes or build (hard negatives, as in Market-1501);
* each camera has its own colour cast, brightness, contrast, blur, noise and scene, and its own
  mix of front/back/side views (the cross-camera gap);
* each image has pose (stride, arm swing, lean), scale and translation jitter and a cluttered
  background; some are crops cut off by the detector;
* distractors (pid 0000) and junk boxes (pid -1) are in the gallery, as in Market-1501;
* the ``occluded`` preset occludes the queries with objects and other people, in the style of
  Occluded-Duke, while training images stay holistic.

Rendering is batched in torch: every body part is a signed-distance shape composited with a soft
edge, so a batch of images is a handful of tensor operations. All randomness comes from one numpy
generator seeded by the preset's seed, so the same seed writes the same files.

File names follow Market-1501: ``PPPP_cCsS_FFFFFF_II.png`` (pid, 1-based camera, sequence,
frame, box index); the folders are ``bounding_box_train/``, ``bounding_box_test/`` and ``query/``.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reidbench.data.base import ReIDDataset
from reidbench.data.registry import DatasetEntry, register_dataset
from reidbench.errors import DataError, ParameterError

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1

# Small palettes on purpose: with hundreds of identities many share colours.
UPPER = np.array(
    [
        [20, 20, 24], [235, 235, 235], [128, 128, 132], [30, 40, 90], [180, 30, 35],
        [40, 90, 170], [40, 110, 60], [220, 190, 50], [225, 140, 170], [110, 70, 40],
        [200, 180, 140], [90, 40, 110],
    ], dtype=np.float32) / 255.0  # fmt: skip
LOWER = np.array(
    [
        [22, 22, 26], [50, 70, 120], [120, 120, 125], [170, 150, 110], [230, 230, 225],
        [90, 60, 40], [35, 40, 70], [150, 40, 45],
    ], dtype=np.float32) / 255.0  # fmt: skip
SKIN = np.array(
    [[240, 205, 180], [215, 170, 135], [180, 130, 95], [120, 80, 55], [90, 60, 40]],
    dtype=np.float32) / 255.0  # fmt: skip
HAIR = np.array(
    [[20, 16, 14], [70, 45, 30], [150, 110, 60], [200, 170, 110], [140, 140, 140], [120, 40, 30]],
    dtype=np.float32) / 255.0  # fmt: skip
SHOES = np.array(
    [[15, 15, 15], [240, 240, 240], [110, 70, 40], [60, 60, 70], [180, 40, 40]],
    dtype=np.float32) / 255.0  # fmt: skip
BAGS = np.array(
    [[20, 20, 20], [90, 60, 35], [40, 60, 120], [150, 30, 40], [200, 190, 170], [60, 90, 60]],
    dtype=np.float32) / 255.0  # fmt: skip


@dataclass(frozen=True, eq=False)
class Domain:
    """The appearance statistics of one synthetic domain: palettes, body shape and cameras.

    Domain ``a`` is the embedded default's. Domain ``b`` (``synthetic-mini-b``) is the target of
    the cross-domain protocol: other palettes, taller and slimmer bodies, and darker, warmer,
    blurrier cameras with other scenes, so a model trained on ``a`` meets a domain gap.
    """

    name: str
    upper: np.ndarray
    lower: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    shoes: np.ndarray
    bags: np.ndarray
    height: tuple[float, float] = (0.82, 0.96)
    shoulder: tuple[float, float] = (0.15, 0.22)
    hip: tuple[float, float] = (0.11, 0.16)
    leg: tuple[float, float] = (0.44, 0.52)
    head: tuple[float, float] = (0.055, 0.07)
    gain: tuple[float, float] = (0.78, 1.2)
    bright: tuple[float, float] = (-0.08, 0.08)
    contrast: tuple[float, float] = (0.7, 1.15)
    blur: tuple[float, float] = (0.0, 1.1)
    noise: tuple[float, float] = (0.005, 0.03)
    ground: tuple[float, float] = (0.3, 0.65)
    wall: tuple[float, float] = (0.25, 0.8)


PATTERNS = ("solid", "hstripes", "vstripes", "checks", "logo", "open_jacket")
BAGS_KIND = ("none", "backpack", "handbag", "shoulder")
VIEWS = ("front", "back", "left", "right")

DOMAINS: dict[str, Domain] = {
    "a": Domain("a", UPPER, LOWER, SKIN, HAIR, SHOES, BAGS),
    "b": Domain(
        "b",
        # other palettes: muted earth tones and pastels instead of saturated primaries
        upper=np.array(
            [[60, 52, 44], [250, 240, 215], [160, 150, 120], [95, 110, 70], [205, 120, 80],
             [120, 150, 190], [170, 200, 170], [240, 215, 150], [190, 160, 210], [140, 90, 70],
             [90, 100, 120], [230, 180, 170]], dtype=np.float32) / 255.0,
        lower=np.array(
            [[70, 60, 50], [110, 120, 90], [200, 190, 160], [60, 80, 100], [160, 110, 80],
             [130, 130, 150], [90, 40, 60], [210, 200, 190]], dtype=np.float32) / 255.0,
        skin=SKIN[::-1].copy(),
        hair=np.array([[40, 30, 25], [100, 70, 40], [190, 150, 90], [60, 60, 60], [210, 210, 200], [90, 50, 40]],
                      dtype=np.float32) / 255.0,
        shoes=np.array([[90, 60, 40], [200, 190, 170], [40, 40, 50], [120, 120, 120], [60, 90, 60]],
                       dtype=np.float32) / 255.0,
        bags=np.array([[120, 80, 50], [30, 30, 30], [180, 160, 120], [70, 90, 110], [150, 60, 50], [200, 200, 200]],
                      dtype=np.float32) / 255.0,
        height=(0.88, 0.99), shoulder=(0.12, 0.18), hip=(0.09, 0.13), leg=(0.48, 0.56), head=(0.05, 0.062),
        gain=(0.85, 1.3), bright=(-0.14, 0.02), contrast=(0.6, 1.0), blur=(0.5, 1.6), noise=(0.02, 0.05),
        ground=(0.15, 0.4), wall=(0.5, 0.9),
    ),
}  # fmt: skip
CUES = ("basic", "rich")


@dataclass(frozen=True)
class Preset:
    """Sizes of one synthetic dataset. Image counts are per split, in Market-1501 terms."""

    name: str
    height: int
    width: int
    num_train_ids: int
    num_test_ids: int
    num_cameras: int
    train_images: int
    query_images: int
    gallery_images: int
    distractors: int
    junk: int
    occluded_queries: bool = False
    occluded_query_ratio: float = 0.9  # of the queries, when occluded_queries
    occluded_gallery_ratio: float = 0.1  # of the gallery images, when occluded_queries
    exact_counts: bool = False  # hit query/gallery counts exactly (market, occluded); mini keeps <= 1 query per id and camera
    ext: str = "png"
    seed: int = 0
    description: str = ""
    domain: str = "a"  # appearance statistics (DOMAINS)
    cues: str = "basic"  # "rich" adds identity cues that survive grayscale (textures, hats, coats, back prints)
    extra_train_ids: int = 0  # more training identities, drawn after everything else (the test split is unchanged)
    extra_train_images: int = 0
    revision: int = 0  # bumped when a preset's images change; part of its folder name when > 0


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        name="tiny", height=64, width=32, num_train_ids=24, num_test_ids=16, num_cameras=3,
        train_images=192, query_images=32, gallery_images=96, distractors=8, junk=4,
        description="for unit tests and smoke runs (seconds)",
    ),
    "mini": Preset(
        name="mini", height=128, width=64, num_train_ids=96, num_test_ids=96, num_cameras=4,
        train_images=1152, query_images=192, gallery_images=960, distractors=96, junk=24,
        description="embedded default: small enough that a tiny model trains in a few minutes on 2 CPU cores",
    ),
    "market": Preset(
        name="market", height=256, width=128, num_train_ids=751, num_test_ids=750, num_cameras=6,
        train_images=12936, query_images=3368, gallery_images=13000, distractors=2913, junk=0,
        ext="jpg", exact_counts=True,
        description="Market-1501's counts: 751 train ids / 12,936 images, 750 test ids, 3,368 queries, 15,913 gallery",
    ),
    "occluded": Preset(
        name="occluded", height=256, width=128, num_train_ids=702, num_test_ids=519, num_cameras=8,
        train_images=15618, query_images=2210, gallery_images=16091, distractors=1570, junk=0,
        occluded_queries=True, occluded_query_ratio=1.0, ext="jpg", exact_counts=True, revision=1,
        description="Occluded-Duke style: holistic training images, occluded queries, 8 cameras",
    ),
    "tiny-occluded": Preset(
        name="tiny-occluded", height=64, width=32, num_train_ids=24, num_test_ids=16, num_cameras=3,
        train_images=192, query_images=32, gallery_images=96, distractors=8, junk=4,
        occluded_queries=True, occluded_query_ratio=1.0,
        description="synthetic-tiny's occluded twin, for unit tests",
    ),
    "mini-occluded": Preset(
        name="mini-occluded", height=128, width=64, num_train_ids=96, num_test_ids=96, num_cameras=4,
        train_images=1152, query_images=192, gallery_images=960, distractors=96, junk=24,
        occluded_queries=True, occluded_query_ratio=1.0,
        description="the embedded default's occluded twin: synthetic-mini's training images and identities, "
                    "every query occluded by an object (NPO) or another person (NTP), 10% of the gallery too "
                    "(Occluded-Duke's ratios)",
    ),
    "mini-b": Preset(
        name="mini-b", height=128, width=64, num_train_ids=96, num_test_ids=96, num_cameras=4,
        train_images=1152, query_images=192, gallery_images=960, distractors=96, junk=24, seed=1, domain="b",
        description="a second domain at mini size (other palettes, bodies, cameras and scenes): the target of the cross-domain protocol",
    ),
    "mini-rich": Preset(
        name="mini-rich", height=128, width=64, num_train_ids=96, num_test_ids=96, num_cameras=4,
        train_images=1152, query_images=192, gallery_images=960, distractors=96, junk=24, cues="rich",
        description="synthetic-mini with identity cues that survive grayscale (textures, hats, coats, back prints); "
                    "an embedded-default experiment",
    ),
    "mini-large": Preset(
        name="mini-large", height=128, width=64, num_train_ids=96, num_test_ids=96, num_cameras=4,
        train_images=1152, query_images=192, gallery_images=960, distractors=96, junk=24,
        extra_train_ids=96, extra_train_images=1152,
        description="synthetic-mini with twice the training identities and images, the same test split; "
                    "an embedded-default experiment",
    ),
}  # fmt: skip


# --------------------------------------------------------------------------------------------
# Parameters: identities, cameras and images, all drawn from one numpy generator.
# --------------------------------------------------------------------------------------------


def _identity_params(rng: np.random.Generator, n: int, dom: Domain | None = None) -> dict[str, np.ndarray]:
    """Appearance of ``n`` identities (one row each)."""
    dom = dom or DOMAINS["a"]
    ident = {
        "upper": rng.integers(0, len(UPPER), n),
        "upper2": rng.integers(0, len(UPPER), n),
        "pattern": rng.choice(len(PATTERNS), n, p=[0.4, 0.15, 0.1, 0.1, 0.12, 0.13]),
        "stripe_period": rng.uniform(0.035, 0.07, n),
        "long_sleeve": rng.random(n) < 0.55,
        "lower": rng.integers(0, len(LOWER), n),
        "lower_kind": rng.choice(3, n, p=[0.72, 0.18, 0.10]),  # trousers, shorts, skirt
        "skin": rng.integers(0, len(SKIN), n),
        "hair": rng.integers(0, len(HAIR), n),
        "long_hair": rng.random(n) < 0.3,
        "shoes": rng.integers(0, len(SHOES), n),
        "bag": rng.choice(len(BAGS_KIND), n, p=[0.4, 0.25, 0.15, 0.2]),
        "bag_color": rng.integers(0, len(BAGS), n),
        "height": rng.uniform(*dom.height, n),  # fraction of the box height at scale 1
        "shoulder": rng.uniform(*dom.shoulder, n),  # half-width of the shoulders, fraction of H*0.5
        "hip": rng.uniform(*dom.hip, n),
        "leg": rng.uniform(*dom.leg, n),  # fraction of body height
        "head": rng.uniform(*dom.head, n),
    }
    return ident


def _colours(ident: dict[str, np.ndarray], dom: Domain) -> dict[str, np.ndarray]:
    """The identities' palette indices resolved to RGB in the domain's palettes."""
    return {**ident, "upper_rgb": dom.upper[ident["upper"]], "upper2_rgb": dom.upper[ident["upper2"]],
            "lower_rgb": dom.lower[ident["lower"]], "skin_rgb": dom.skin[ident["skin"]],
            "hair_rgb": dom.hair[ident["hair"]], "shoes_rgb": dom.shoes[ident["shoes"]],
            "bag_rgb": dom.bags[ident["bag_color"]]}  # fmt: skip


def _rich_cues(seed: int, n: int) -> dict[str, np.ndarray]:
    """Identity cues that survive grayscale, from their own stream (the base identities are unchanged).

    A luminance texture on the top and on the trousers (ribs, diagonals or dots, a third of the
    colour's brightness), a hat (cap or beanie), a long coat that hides the hips, and a large
    print on the back that only the back view shows.
    """
    rng = np.random.default_rng([seed, GENERATOR_VERSION, 7])
    return {
        "texture_top": rng.choice(4, n, p=[0.3, 0.25, 0.25, 0.2]),  # none, ribs, diagonal, dots
        "texture_low": rng.choice(4, n, p=[0.4, 0.2, 0.2, 0.2]),
        "texture_period": rng.uniform(0.025, 0.045, n),
        "hat": rng.choice(3, n, p=[0.55, 0.25, 0.2]),  # none, cap, beanie
        "coat": rng.random(n) < 0.25,
        "back_print": rng.choice(3, n, p=[0.5, 0.25, 0.25]),  # none, a band, a big square
    }


def _camera_params(rng: np.random.Generator, n: int, dom: Domain | None = None) -> dict[str, np.ndarray]:
    """Per-camera colour cast, exposure, blur, noise, scene and view mix."""
    dom = dom or DOMAINS["a"]
    views = rng.dirichlet(np.ones(4) * 1.5, n)
    return {
        "gain": rng.uniform(*dom.gain, (n, 3)),
        "bright": rng.uniform(*dom.bright, n),
        "contrast": rng.uniform(*dom.contrast, n),
        "blur": rng.uniform(*dom.blur, n),  # sigma in pixels at 128 px height
        "noise": rng.uniform(*dom.noise, n),
        # muted scenes: a grey level plus a small tint
        "ground": rng.uniform(*dom.ground, (n, 1)) + rng.uniform(-0.08, 0.08, (n, 3)),
        "wall": rng.uniform(*dom.wall, (n, 1)) + rng.uniform(-0.12, 0.12, (n, 3)),
        "horizon": rng.uniform(0.45, 0.8, n),
        "views": views,
    }


def _image_params(
    rng: np.random.Generator, pids: np.ndarray, cams: np.ndarray, cam: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Per-image pose, placement, view and clutter."""
    n = len(pids)
    view = np.array([rng.choice(4, p=cam["views"][c]) for c in cams], dtype=np.int64)
    cut = rng.random(n) < 0.12  # a detector box that cuts the person off
    return {
        "view": view,
        "scale": np.where(cut, rng.uniform(1.05, 1.3, n), rng.uniform(0.86, 1.04, n)),
        "dx": rng.uniform(-0.07, 0.07, n),
        "dy": np.where(cut, rng.uniform(-0.12, 0.12, n), rng.uniform(-0.04, 0.04, n)),
        "stride": rng.uniform(-1.0, 1.0, n),  # leg phase: -1..1
        "swing": rng.uniform(-1.0, 1.0, n),
        "lean": rng.uniform(-0.03, 0.03, n),
        "light": rng.uniform(-0.06, 0.06, n),
        "light_dir": rng.uniform(-1, 1, n),
        "clutter_seed": rng.integers(0, 2**31 - 1, n),
    }


# --------------------------------------------------------------------------------------------
# Rendering: signed-distance shapes composited with soft edges, batched over images.
# --------------------------------------------------------------------------------------------


class _Canvas:
    """A batch of images with coordinate grids; y and x are in units of the image height."""

    def __init__(self, n: int, height: int, width: int, softness_px: float = 0.7) -> None:
        self.h, self.w = height, width
        ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32) + 0.5) / height  # same unit as y
        self.y = ys.view(1, height, 1)
        self.x = xs.view(1, 1, width)
        self.soft = softness_px / height
        self.img = torch.zeros(n, 3, height, width)

    def alpha(self, sdf: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-sdf / self.soft)

    def paint(self, sdf: torch.Tensor, color: torch.Tensor, visible: torch.Tensor | None = None) -> None:
        """Composite a shape. ``color`` is (B,3) or (B,3,H,W); ``visible`` is a (B,) mask."""
        a = self.alpha(sdf).unsqueeze(1)
        if visible is not None:
            a = a * visible.view(-1, 1, 1, 1).to(a.dtype)
        if color.dim() == 2:
            color = color.view(-1, 3, 1, 1)
        self.img = self.img + a * (color - self.img)


def _col(t: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(t, dtype=np.float32)).view(-1, 1, 1)


def _ellipse(c: _Canvas, cx: torch.Tensor, cy: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor) -> torch.Tensor:
    k = torch.sqrt(((c.x - cx) / rx) ** 2 + ((c.y - cy) / ry) ** 2)
    return (k - 1.0) * torch.minimum(rx, ry)


def _capsule(c: _Canvas, ax, ay, bx, by, r) -> torch.Tensor:  # type: ignore[no-untyped-def]
    px, py = c.x - ax, c.y - ay
    vx, vy = bx - ax, by - ay
    t = ((px * vx + py * vy) / (vx * vx + vy * vy + 1e-9)).clamp(0, 1)
    return torch.sqrt((px - t * vx) ** 2 + (py - t * vy) ** 2) - r


def _trapezoid(c: _Canvas, cx, top, bottom, half_top, half_bottom, round_=0.01) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """A vertical trapezoid between ``top`` and ``bottom`` with linearly varying half-width."""
    t = ((c.y - top) / (bottom - top)).clamp(0, 1)
    half = half_top + t * (half_bottom - half_top)
    dx = (c.x - cx).abs() - half
    dy = torch.maximum(top - c.y, c.y - bottom)
    outside = torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2)
    inside = torch.maximum(dx, dy).clamp(max=0)
    return outside + inside - round_


def _box(c: _Canvas, x0, y0, x1, y1) -> torch.Tensor:  # type: ignore[no-untyped-def]
    dx = torch.maximum(x0 - c.x, c.x - x1)
    dy = torch.maximum(y0 - c.y, c.y - y1)
    outside = torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2)
    return outside + torch.maximum(dx, dy).clamp(max=0)


def _background(c: _Canvas, cams: np.ndarray, camp: dict[str, np.ndarray], seeds: np.ndarray) -> None:
    """Camera scene (wall, ground) plus per-image clutter: boxes, poles and blobs."""
    n = len(cams)
    horizon = _col(camp["horizon"][cams])
    wall = torch.as_tensor(camp["wall"][cams], dtype=torch.float32).view(n, 3, 1, 1)
    ground = torch.as_tensor(camp["ground"][cams], dtype=torch.float32).view(n, 3, 1, 1)
    g = ((c.y - horizon) / 0.02).sigmoid().unsqueeze(1)
    shade = (1.0 - 0.25 * c.y).unsqueeze(1)
    c.img = (wall * (1 - g) + ground * g) * shade
    aspect = c.w / c.h
    for k in range(7):
        r = np.stack([np.random.default_rng([int(s), k]).random(9) for s in seeds])
        x0 = torch.as_tensor(r[:, 0] * aspect - 0.1, dtype=torch.float32).view(-1, 1, 1)
        y0 = torch.as_tensor(r[:, 1] * 1.1 - 0.1, dtype=torch.float32).view(-1, 1, 1)
        wd = torch.as_tensor(0.03 + r[:, 2] * 0.3 * aspect, dtype=torch.float32).view(-1, 1, 1)
        ht = torch.as_tensor(0.03 + r[:, 3] * 0.35, dtype=torch.float32).view(-1, 1, 1)
        grey = torch.as_tensor(r[:, 4:5], dtype=torch.float32)
        color = (grey * 0.7 + 0.15) + (torch.as_tensor(r[:, 5:8], dtype=torch.float32) - 0.5) * 0.35
        kind = r[:, 8]
        sdf_box = _box(c, x0, y0, x0 + wd, y0 + ht)
        sdf_blob = _ellipse(c, x0 + wd / 2, y0 + ht / 2, wd / 2, ht / 2)
        sdf = torch.where(torch.as_tensor(kind < 0.6).view(-1, 1, 1), sdf_box, sdf_blob)
        c.paint(sdf, color)


def _pattern_color(
    c: _Canvas, ident: dict[str, np.ndarray], ids: np.ndarray, cx: torch.Tensor, top: torch.Tensor, s: torch.Tensor, view: np.ndarray
) -> torch.Tensor:
    """The torso's colour per pixel: primary colour with the identity's pattern."""
    n = len(ids)
    c1 = torch.as_tensor(ident["upper_rgb"][ids]).view(n, 3, 1, 1)
    c2 = torch.as_tensor(ident["upper2_rgb"][ids]).view(n, 3, 1, 1)
    same = torch.as_tensor(ident["upper"][ids] == ident["upper2"][ids]).view(n, 1, 1, 1)
    c2 = torch.where(same, 1.0 - c1 * 0.6, c2)  # a pattern must be visible
    period = _col(ident["stripe_period"][ids]) * s
    pat = ident["pattern"][ids]
    ly, lx = (c.y - top), (c.x - cx)
    hs = (torch.sin(2 * math.pi * ly / period) > 0).float()
    vs = (torch.sin(2 * math.pi * lx / period) > 0).float()
    checks = (hs + vs == 1).float()
    logo = ((lx.abs() < 0.035 * s) & (ly > 0.05 * s) & (ly < 0.11 * s)).float()
    jacket = (lx.abs() < 0.03 * s).float()
    front = torch.as_tensor(view == 0).view(n, 1, 1)
    back = torch.as_tensor(view == 1).view(n, 1, 1)
    m = torch.zeros(n, c.h, c.w)
    for k, mask in enumerate([None, hs, vs, checks, logo, jacket]):
        if mask is None:
            continue
        sel = torch.as_tensor(pat == k).view(n, 1, 1)
        if k in (4, 5):  # a chest logo and an open jacket show only from the front
            sel = sel & front
        if k == 4:
            # from the back the logo is a smaller print high on the shoulders
            mask_back = ((lx.abs() < 0.02 * s) & (ly > 0.02 * s) & (ly < 0.05 * s)).float()
            m = torch.where(torch.as_tensor(pat == k).view(n, 1, 1) & back, mask_back, m)
        m = torch.where(sel, mask.expand(n, -1, -1), m)
    return c1 + m.unsqueeze(1) * (c2 - c1)


def _person(
    c: _Canvas, ident: dict[str, np.ndarray], ids: np.ndarray, imgp: dict[str, np.ndarray], visible: np.ndarray | None = None
) -> None:
    """Draw one person per image (identity ``ids[i]`` with pose ``imgp``)."""
    vis = None if visible is None else torch.as_tensor(visible)
    T = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32)).view(-1, 1, 1)  # noqa: E731
    view = imgp["view"]
    side = (view >= 2).astype(np.float32)
    s = T(imgp["scale"] * ident["height"][ids])
    cx = T(c.w / c.h / 2 + imgp["dx"] * c.w / c.h)
    foot = T(0.5 + 0.5 * imgp["scale"] * ident["height"][ids] + imgp["dy"])
    top = foot - s
    lean = T(imgp["lean"])
    width_k = T(1.0 - 0.45 * side)  # seen from the side the body is narrower
    head_r = T(ident["head"][ids]) * s / 0.9
    leg_len = T(ident["leg"][ids]) * s
    hip_y = foot - leg_len
    neck_y = top + 2.1 * head_r
    sh = T(ident["shoulder"][ids]) * s * width_k * 0.5
    hip = T(ident["hip"][ids]) * s * width_k * 0.5
    skin = torch.as_tensor(ident["skin_rgb"][ids])
    hair = torch.as_tensor(ident["hair_rgb"][ids])
    lower = torch.as_tensor(ident["lower_rgb"][ids])
    shoes = torch.as_tensor(ident["shoes_rgb"][ids])
    bagc = torch.as_tensor(ident["bag_rgb"][ids])
    stride = T(imgp["stride"]) * (0.25 + 0.75 * T(side))  # legs apart mostly in side views
    swing = T(imgp["swing"]) * (0.3 + 0.7 * T(side))
    bag = ident["bag"][ids]
    back_view = view == 1
    flip = T(np.where(view == 3, -1.0, 1.0))

    # a backpack seen from the front/side peeks out behind the body
    bp = (bag == 1) & ~back_view
    c.paint(_box(c, cx - sh * 0.9 - 0.01 * flip, neck_y + 0.02 * s, cx + sh * 0.9 - 0.01 * flip, hip_y - 0.02 * s) - 0.008,
            bagc, torch.as_tensor(bp & (view >= 2)) if vis is None else torch.as_tensor(bp & (view >= 2)) & vis)

    rich = "texture_top" in ident
    if rich:
        lower = _textured(c, lower, ident["texture_low"][ids], ident["texture_period"][ids] * 1.3, s, cx, top)
    # legs (trousers, shorts or skirt) and shoes
    lk = ident["lower_kind"][ids]
    leg_w = hip * 0.55
    for sgn in (-1.0, 1.0):
        ax = cx + sgn * hip * 0.5 + lean * (hip_y - top)
        fx = cx + sgn * hip * 0.45 + sgn * stride * 0.09 * s
        knee_y = hip_y + leg_len * 0.5
        sdf_leg = _capsule(c, ax, hip_y, fx, foot - 0.02 * s, leg_w)
        c.paint(sdf_leg, skin, vis)
        # clothing covers the whole leg (trousers) or down to the knee (shorts/skirt)
        cover_to = torch.where(torch.as_tensor(lk == 0).view(-1, 1, 1), foot - 0.02 * s, knee_y)
        sdf_cloth = torch.maximum(sdf_leg, c.y - cover_to)
        c.paint(sdf_cloth, lower, vis)
        c.paint(_ellipse(c, fx + 0.012 * s * flip, foot - 0.012 * s, leg_w * 1.3, 0.018 * s), shoes, vis)
    skirt = torch.as_tensor(lk == 2)
    c.paint(_trapezoid(c, cx, hip_y - 0.02 * s, hip_y + leg_len * 0.42, hip * 1.0, hip * 1.6),
            lower, skirt if vis is None else skirt & vis)

    # torso with pattern
    torso_sdf = _trapezoid(c, cx + lean * 0.3 * s, neck_y, hip_y + 0.01 * s, sh, hip * 1.05, 0.012 * s)
    torso_col = _pattern_color(c, ident, ids, cx, neck_y, s, view)
    if rich:
        torso_col = _textured(c, torso_col, ident["texture_top"][ids], ident["texture_period"][ids], s, cx, top)
        # a long coat in the top's colour hides the hips and thighs
        coat = torch.as_tensor(ident["coat"][ids])
        c.paint(_trapezoid(c, cx + lean * 0.3 * s, neck_y, hip_y + leg_len * 0.45, sh * 1.02, hip * 1.45, 0.012 * s),
                torso_col, coat if vis is None else coat & vis)
    c.paint(torso_sdf, torso_col, vis)
    if rich:
        # a print on the back: a light band across the shoulder blades or a big square; back view only
        bp_kind = ident["back_print"][ids]
        band = _box(c, cx - sh * 0.95, neck_y + 0.06 * s, cx + sh * 0.95, neck_y + 0.11 * s)
        square = _box(c, cx - sh * 0.5, neck_y + 0.08 * s, cx + sh * 0.5, neck_y + 0.22 * s)
        print_sdf = torch.where(torch.as_tensor(bp_kind == 1).view(-1, 1, 1), band, square)
        show = torch.as_tensor((bp_kind > 0) & back_view)
        ink = 1.0 - 0.7 * torch.as_tensor(ident["upper_rgb"][ids]).mean(dim=1, keepdim=True).expand(-1, 3)
        c.paint(torch.maximum(print_sdf, torso_sdf), ink, show if vis is None else show & vis)

    # arms: sleeves in the upper colour, hands in skin; long or short sleeves
    upper = torch.as_tensor(ident["upper_rgb"][ids])
    long_sl = torch.as_tensor(ident["long_sleeve"][ids]).view(-1, 1, 1)
    arm_w = sh * 0.28 + 0.004
    for sgn in (-1.0, 1.0):
        ax = cx + sgn * sh * 0.92
        ay = neck_y + 0.03 * s
        hx = ax + sgn * 0.02 * s + (-sgn) * swing * 0.07 * s * T(side) + swing * 0.03 * s * (1 - T(side))
        hy = hip_y + 0.02 * s
        arm = _capsule(c, ax, ay, hx, hy, arm_w)
        c.paint(arm, skin, vis)
        elbow_y = ay + (hy - ay) * 0.45
        sleeve = torch.maximum(arm, torch.where(long_sl, c.y - (hy - 0.03 * s), c.y - elbow_y))
        c.paint(sleeve, upper, vis)
        c.paint(_ellipse(c, hx, hy + 0.01 * s, arm_w * 1.1, arm_w * 1.3), skin, vis)

    # bags in front of the body
    bk = torch.as_tensor((bag == 1) & back_view)
    c.paint(_box(c, cx - sh * 0.8, neck_y + 0.03 * s, cx + sh * 0.8, hip_y - 0.03 * s) - 0.01, bagc,
            bk if vis is None else bk & vis)
    strap = torch.as_tensor(((bag == 1) | (bag == 3)) & ~back_view & (view < 2))
    c.paint(_capsule(c, cx - sh * 0.6, neck_y, cx + sh * 0.7, hip_y - 0.02 * s, 0.006 * s + 0.002), bagc * 0.8,
            strap if vis is None else strap & vis)
    hb = torch.as_tensor((bag == 2) | (bag == 3))
    side_sgn = T(np.where(view == 2, 1.0, -1.0))
    bx = cx + side_sgn * (sh + 0.025 * s)
    c.paint(_box(c, bx - 0.035 * s, hip_y - 0.06 * s, bx + 0.035 * s, hip_y + 0.05 * s) - 0.005, bagc,
            hb if vis is None else hb & vis)

    # head and hair; hair covers the face from the back
    hx = cx + lean * 0.3 * s
    hy = top + head_r
    c.paint(_capsule(c, hx, neck_y - 0.02 * s, hx, neck_y + 0.01 * s, head_r * 0.45), skin, vis)
    c.paint(_ellipse(c, hx, hy, head_r * 0.85, head_r), skin, vis)
    long_h = torch.as_tensor(ident["long_hair"][ids]).view(-1, 1, 1)
    hair_sdf = _ellipse(c, hx, hy - head_r * 0.2, head_r * 0.92, head_r * 0.88)
    hair_sdf = torch.maximum(hair_sdf, c.y - (hy - head_r * 0.15))
    long_sdf = _box(c, hx - head_r * 0.95, hy - head_r * 0.5, hx + head_r * 0.95, hy + head_r * 2.2) - 0.004
    long_sdf = torch.maximum(long_sdf, -_ellipse(c, hx, hy + head_r * 0.3, head_r * 0.7, head_r * 0.75)
                             + torch.where(torch.as_tensor(back_view).view(-1, 1, 1), 10.0, 0.0))
    hair_sdf = torch.where(long_h, torch.minimum(hair_sdf, long_sdf), hair_sdf)
    back_hair = _ellipse(c, hx, hy, head_r * 0.9, head_r * 1.02)
    hair_sdf = torch.where(torch.as_tensor(back_view).view(-1, 1, 1), torch.minimum(hair_sdf, back_hair), hair_sdf)
    c.paint(hair_sdf, hair, vis)
    if "hat" in ident:
        hat = ident["hat"][ids]
        hat_col = 1.0 - 0.8 * hair  # a hat stands out from the hair in brightness
        crown = torch.maximum(_ellipse(c, hx, hy - head_r * 0.35, head_r * 0.98, head_r * 0.8), c.y - (hy - head_r * 0.3))
        # a cap's brim points where the person faces (side views)
        brim_x0 = torch.minimum(hx, hx + flip * head_r * 1.5)
        brim_x1 = torch.maximum(hx, hx + flip * head_r * 1.5)
        brim = _box(c, brim_x0, hy - head_r * 0.42, brim_x1, hy - head_r * 0.28)
        cap = torch.where(torch.as_tensor(view >= 2).view(-1, 1, 1), torch.minimum(crown, brim), crown)
        beanie = _ellipse(c, hx, hy - head_r * 0.55, head_r * 0.95, head_r * 0.75)
        hat_sdf = torch.where(torch.as_tensor(hat == 1).view(-1, 1, 1), cap, beanie)
        wear = torch.as_tensor(hat > 0)
        c.paint(hat_sdf, hat_col, wear if vis is None else wear & vis)


def _textured(c: _Canvas, colour: torch.Tensor, kind: np.ndarray, period: np.ndarray, s: torch.Tensor,
              cx: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    """``colour`` darkened by a third along a luminance texture: none, ribs, diagonals or dots."""
    n = len(kind)
    colour = colour.view(n, 3, 1, 1) if colour.dim() == 2 else colour
    per = _col(period) * s
    ly, lx = c.y - top, c.x - cx
    ribs = (torch.sin(2 * math.pi * ly / (per * 0.6)) > 0.3).float()
    diag = (torch.sin(2 * math.pi * (lx + ly) / per) > 0).float()
    dots = ((torch.sin(2 * math.pi * lx / per) > 0.5) & (torch.sin(2 * math.pi * ly / per) > 0.5)).float()
    m = torch.zeros(n, c.h, c.w)
    for k, mask in ((1, ribs), (2, diag), (3, dots)):
        m = torch.where(torch.as_tensor(kind == k).view(n, 1, 1), mask.expand(n, -1, -1), m)
    return colour * (1.0 - 0.33 * m.unsqueeze(1))


def _occluders(c: _Canvas, rng_seeds: np.ndarray, ident: dict[str, np.ndarray], ids: np.ndarray,
               ntp_pool: np.ndarray) -> None:
    """Occluded-Duke style occlusion over part of the body, one of three kinds per image:

    * 45% a bottom block (car, bench, box) and 30% a side block (pole, wall, tree): objects, the
      non-pedestrian occlusion (NPO) of the FED paper;
    * 25% another person of the dataset (a row of ``ntp_pool`` other than the target), standing
      closer to the camera on one side: the non-target pedestrian (NTP).

    The split is this generator's choice; Occluded-Duke publishes no per-kind count.
    """
    r = np.stack([np.random.default_rng([int(s), 99]).random(12) for s in rng_seeds])
    aspect = c.w / c.h
    kind = r[:, 0]
    color = torch.as_tensor(r[:, 1:4] * 0.8 + 0.1, dtype=torch.float32)
    frac = 0.25 + 0.25 * r[:, 4]  # occluded fraction of the height or width: FED's NPO strips, 1/4 to 1/2
    T = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32)).view(-1, 1, 1)  # noqa: E731
    # bottom block (car, bench, box)
    bottom = _box(c, T(-0.1 + 0 * r[:, 5]), T(1.0 - frac), T(aspect + 0.1 + 0 * r[:, 5]), T(1.2 + 0 * r[:, 5]))
    # side block (pole, wall, tree)
    left = r[:, 5] < 0.5
    x0 = np.where(left, -0.1, aspect * (1 - frac))
    x1 = np.where(left, aspect * frac, aspect + 0.1)
    side = _box(c, T(x0), T(-0.1 + 0 * x0), T(x1), T(1.2 + 0 * x0))
    npo = kind < 0.75
    c.paint(torch.where(T(kind < 0.45) > 0, bottom, side), color, torch.as_tensor(npo))
    ntp = ~npo
    if ntp.any() and len(ntp_pool) > 1:
        # another identity, never the target: a pick from the pool, moved one on if it is the target
        pick = (r[:, 6] * len(ntp_pool)).astype(np.int64) % len(ntp_pool)
        other = ntp_pool[pick]
        other = np.where(other == ids, ntp_pool[(pick + 1) % len(ntp_pool)], other)
        sgn = np.where(r[:, 7] < 0.5, -1.0, 1.0)
        pose = {
            "view": (r[:, 8] * 4).astype(np.int64).clip(0, 3),
            "scale": 1.0 + 0.15 * r[:, 9],  # closer to the camera than the target
            "dx": sgn * (0.3 + 0.2 * r[:, 10]),  # a fraction of the width: covers one side
            "dy": 0.02 + 0.06 * r[:, 11],
            "stride": r[:, 4] * 2 - 1, "swing": r[:, 5] * 2 - 1, "lean": (r[:, 6] - 0.5) * 0.04,
        }  # fmt: skip
        _person(c, ident, other, pose, visible=ntp)


def _camera_effects(c: _Canvas, cams: np.ndarray, camp: dict[str, np.ndarray], imgp: dict[str, np.ndarray], noise_seed: int) -> torch.Tensor:
    """Colour cast, exposure, contrast, illumination gradient, blur and sensor noise."""
    n = len(cams)
    img = c.img
    gain = torch.as_tensor(camp["gain"][cams], dtype=torch.float32).view(n, 3, 1, 1)
    img = img * gain
    mean = img.mean(dim=(1, 2, 3), keepdim=True)
    img = (img - mean) * _col(camp["contrast"][cams]).unsqueeze(1) + mean + _col(camp["bright"][cams]).unsqueeze(1)
    grad = (c.x / (c.w / c.h) - 0.5).unsqueeze(1) * _col(imgp["light_dir"]).unsqueeze(1)
    img = img + _col(imgp["light"]).unsqueeze(1) + 0.08 * grad
    sig = camp["blur"][cams] * c.h / 128.0
    if np.any(sig > 0.05):
        radius = max(1, int(math.ceil(3 * float(sig.max()))))
        k = torch.arange(-radius, radius + 1, dtype=torch.float32)
        s = torch.as_tensor(np.maximum(sig, 1e-3), dtype=torch.float32).view(n, 1)
        w = torch.exp(-0.5 * (k.view(1, -1) / s) ** 2)
        w = w / w.sum(dim=1, keepdim=True)  # (n, K)
        pad = torch.nn.functional.pad(img, (radius, radius, radius, radius), mode="replicate")
        # separable blur with a per-image kernel, as shifted weighted sums (exact and deterministic)
        tmp = sum(w[:, i].view(n, 1, 1, 1) * pad[:, :, :, i : i + c.w] for i in range(2 * radius + 1))
        img = sum(w[:, i].view(n, 1, 1, 1) * tmp[:, :, i : i + c.h, :] for i in range(2 * radius + 1))
    gen = torch.Generator().manual_seed(noise_seed)
    img = img + torch.randn(img.shape, generator=gen) * _col(camp["noise"][cams]).unsqueeze(1)
    return img.clamp(0, 1)


def render(
    ident: dict[str, np.ndarray],
    camp: dict[str, np.ndarray],
    ids: np.ndarray,
    cams: np.ndarray,
    imgp: dict[str, np.ndarray],
    height: int,
    width: int,
    *,
    occlude: np.ndarray | None = None,
    noise_seed: int = 0,
    ntp_pool: np.ndarray | None = None,
) -> np.ndarray:
    """Render a batch; returns uint8 images shaped (B, H, W, 3).

    ``occlude`` marks the images to occlude; ``ntp_pool`` holds the identity rows that may stand
    in front of a target as a non-target pedestrian (default: every identity).
    """
    c = _Canvas(len(ids), height, width)
    _background(c, cams, camp, imgp["clutter_seed"])
    _person(c, ident, ids, imgp)
    if occlude is not None and occlude.any():
        before = c.img.clone()
        pool = np.arange(len(ident["height"])) if ntp_pool is None else ntp_pool
        _occluders(c, imgp["clutter_seed"], ident, ids, pool)
        keep = torch.as_tensor(~occlude).view(-1, 1, 1, 1)
        c.img = torch.where(keep, before, c.img)
    img = _camera_effects(c, cams, camp, imgp, noise_seed)
    return (img * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


# --------------------------------------------------------------------------------------------
# Splits and writing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    folder: str
    pids: np.ndarray  # the pid written in the file name (0 = distractor, -1 = junk)
    ident: np.ndarray  # row in the identity table
    cams: np.ndarray  # 0-based
    occlude: np.ndarray


def _spread(rng: np.random.Generator, total: int, n_ids: int, lo: int) -> np.ndarray:
    """Split ``total`` images over ``n_ids`` identities, at least ``lo`` each, uneven like real data."""
    base = np.full(n_ids, lo)
    rest = total - base.sum()
    if rest < 0:
        raise ParameterError(f"cannot give {n_ids} identities {lo} images each from {total} images")
    weights = rng.gamma(2.0, 1.0, n_ids)
    extra = np.floor(weights / weights.sum() * rest).astype(int)
    extra[np.argsort(-weights)[: rest - extra.sum()]] += 1
    return base + extra


def _exact_test_counts(p: Preset, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cameras, queries and gallery images per test identity that sum to the preset's counts exactly.

    Each identity is seen by 2..C cameras, has 1 query per camera at most (as in Market-1501) and at
    least one gallery image per camera, so every query has a cross-camera match.
    """
    n, c = p.num_test_ids, p.num_cameras
    kcs = rng.integers(min(2, c), c + 1, n)
    while kcs.sum() < p.query_images:  # enough cameras to hold one query per (identity, camera)
        room = np.flatnonzero(kcs < c)
        if not len(room):
            raise ParameterError(f"preset {p.name}: {p.query_images} queries do not fit {n} ids x {c} cameras")
        kcs[rng.choice(room)] += 1
    q = np.ones(n, dtype=int)
    for _ in range(p.query_images - n):
        room = np.flatnonzero(q < kcs)
        q[rng.choice(room)] += 1
    rest = p.gallery_images - int(kcs.sum())
    if rest < 0:
        raise ParameterError(f"preset {p.name}: {p.gallery_images} gallery images cannot cover every camera of every id")
    g = kcs + _spread(rng, rest, n, 0) if rest > 0 else kcs.copy()
    return kcs, q, g


def _plan(p: Preset, rng: np.random.Generator) -> tuple[list[_Plan], int]:
    n_ident = p.num_train_ids + p.num_test_ids + p.distractors + p.junk
    cams_all = np.arange(p.num_cameras)

    def cams_for(n_img: int, k_cams: int) -> np.ndarray:
        chosen = rng.choice(cams_all, size=k_cams, replace=False)
        return np.sort(np.concatenate([chosen, rng.choice(chosen, n_img - k_cams)])) if n_img >= k_cams else chosen[:n_img]

    # training ids: rows 0..num_train_ids-1
    train_counts = _spread(rng, p.train_images, p.num_train_ids, 4)
    t_pid, t_ident, t_cam = [], [], []
    for i, k in enumerate(train_counts):
        kc = int(min(p.num_cameras, max(2, rng.integers(2, p.num_cameras + 1)), k))
        t_pid += [i + 1] * k
        t_ident += [i] * k
        t_cam += list(cams_for(k, kc))
    # test ids: each appears in >= 2 cameras; one query per (id, camera) up to the query budget
    q_pid, q_ident, q_cam, g_pid, g_ident, g_cam = [], [], [], [], [], []
    if p.exact_counts:
        kcs, q_per_id, g_per_id = _exact_test_counts(p, rng)
    else:
        q_per_id = _spread(rng, p.query_images, p.num_test_ids, 1)
        g_per_id = _spread(rng, p.gallery_images, p.num_test_ids, 2)
    for j in range(p.num_test_ids):
        row = p.num_train_ids + j
        pid = p.num_train_ids + j + 1
        if p.exact_counts:
            kc = int(kcs[j])
        else:
            kc = int(min(p.num_cameras, max(2, rng.integers(2, p.num_cameras + 1))))
        chosen = rng.choice(cams_all, size=kc, replace=False)
        nq = min(int(q_per_id[j]), kc)
        qc = chosen[:nq]
        # the gallery covers every chosen camera, so each query has a cross-camera match
        gc = np.concatenate([chosen, rng.choice(chosen, max(0, int(g_per_id[j]) - kc))])
        q_pid += [pid] * nq
        q_ident += [row] * nq
        q_cam += list(qc)
        g_pid += [pid] * len(gc)
        g_ident += [row] * len(gc)
        g_cam += list(gc)
    base = p.num_train_ids + p.num_test_ids
    for d in range(p.distractors):
        g_pid.append(0)
        g_ident.append(base + d)
        g_cam.append(int(rng.integers(0, p.num_cameras)))
    for d in range(p.junk):
        g_pid.append(-1)
        g_ident.append(base + p.distractors + d)
        g_cam.append(int(rng.integers(0, p.num_cameras)))
    nq = len(q_pid)
    plans = [
        _Plan("bounding_box_train", np.array(t_pid), np.array(t_ident), np.array(t_cam), np.zeros(len(t_pid), bool)),
        _Plan("query", np.array(q_pid), np.array(q_ident), np.array(q_cam),
              np.full(nq, p.occluded_queries) & (rng.random(nq) < p.occluded_query_ratio)),
        _Plan("bounding_box_test", np.array(g_pid), np.array(g_ident), np.array(g_cam),
              np.full(len(g_pid), p.occluded_queries) & (rng.random(len(g_pid)) < p.occluded_gallery_ratio)),
    ]  # fmt: skip
    return plans, n_ident


def generate(
    preset: str | Preset,
    out: str | Path,
    *,
    seed: int | None = None,
    batch_size: int = 128,
    progress: Callable[[int], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the preset's images under ``out`` in the Market-1501 layout; return ``out``.

    ``progress`` is called with the number of images written since the last call. ``batch_size``
    is part of the recipe: the sensor noise is drawn once per batch, so another batch size writes
    other files (the CLI and the presets always use 128).
    A finished dataset has a ``synthetic.json`` with the preset, seed and generator version.
    """
    from reidbench._alloc import keep_large_allocations_on_heap

    keep_large_allocations_on_heap()
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if isinstance(preset, str) and preset not in PRESETS:
        raise ParameterError(f"unknown synthetic preset {preset!r}; choose one of {', '.join(PRESETS)}")
    seed = p.seed if seed is None else seed
    out = Path(out)
    marker = out / "synthetic.json"
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise DataError(f"{out} is not empty; choose another --out or pass --overwrite")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if p.domain not in DOMAINS or p.cues not in CUES:
        raise ParameterError(f"preset {p.name}: domain must be one of {', '.join(DOMAINS)} and cues one of {', '.join(CUES)}")
    dom = DOMAINS[p.domain]
    rng = np.random.default_rng([seed, GENERATOR_VERSION])
    plans, n_ident = _plan(p, rng)
    ident = _identity_params(rng, n_ident, dom)
    camp = _camera_params(rng, p.num_cameras, dom)
    # everything drawn below from `rng` is what every preset of this version draws; additions use their own streams
    jobs = [(plan, rng) for plan in plans]
    if p.extra_train_ids:
        rng2 = np.random.default_rng([seed, GENERATOR_VERSION, 3])
        extra = _identity_params(rng2, p.extra_train_ids, dom)
        ident = {k: np.concatenate([ident[k], extra[k]]) for k in ident}
        counts = _spread(rng2, p.extra_train_images, p.extra_train_ids, 4)
        rows = np.repeat(np.arange(n_ident, n_ident + p.extra_train_ids), counts)
        cams = np.concatenate([np.sort(rng2.choice(p.num_cameras, int(k))) for k in counts])
        jobs.append((_Plan("bounding_box_train", rows + 1, rows, cams, np.zeros(len(rows), bool)), rng2))
    ident = _colours(ident, dom)
    if p.cues == "rich":
        ident.update(_rich_cues(seed, len(ident["height"])))
    ntp_pool = np.arange(p.num_train_ids, n_ident)  # test identities and distractors
    t0 = time.perf_counter()
    frame = 0
    with ThreadPoolExecutor(max_workers=2) as pool:
        for plan, stream in jobs:
            folder = out / plan.folder
            folder.mkdir(exist_ok=True)
            imgp = _image_params(stream, plan.ident, plan.cams, camp)
            order = np.arange(len(plan.pids))
            for start in range(0, len(order), batch_size):
                sl = order[start : start + batch_size]
                batch_p = {k: v[sl] for k, v in imgp.items()}
                imgs = render(
                    ident, camp, plan.ident[sl], plan.cams[sl], batch_p, p.height, p.width,
                    occlude=plan.occlude[sl], noise_seed=int(stream.integers(0, 2**31 - 1)), ntp_pool=ntp_pool,
                )  # fmt: skip
                names = []
                for i in sl:
                    frame += 1
                    pid = int(plan.pids[i])
                    pid_s = "-1" if pid < 0 else f"{pid:04d}"
                    names.append(folder / f"{pid_s}_c{int(plan.cams[i]) + 1}s1_{frame:06d}_00.{p.ext}")
                list(pool.map(_save, imgs, names))
                if progress is not None:
                    progress(len(sl))
    meta = {"generator_version": GENERATOR_VERSION, "seed": seed, "preset": asdict(p),
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    marker.write_text(json.dumps(meta, indent=2))
    return out


def _save(img: np.ndarray, path: Path) -> None:
    if path.suffix == ".png":
        Image.fromarray(img).save(path, compress_level=1)
    else:
        Image.fromarray(img).save(path, quality=95)


def preset_folder(root: Path, preset: str, seed: int | None = None) -> Path:
    p = PRESETS[preset]
    s = p.seed if seed is None else seed
    return Path(root) / _folder_name(p, s)


def _folder_name(p: Preset, seed: int) -> str:
    return f"synthetic-{p.name}-v{GENERATOR_VERSION}-seed{seed}" + (f"-r{p.revision}" if p.revision else "")


def ensure_generated(root: Path, preset: str, seed: int | None = None, show_progress: bool = True) -> Path:
    """Generate the preset under ``root`` unless a finished copy is already there.

    Safe across processes: generation runs under an OS file lock (``root/.<folder>.lock``, released
    when the process ends, however it ends), so of two processes that need the same preset one
    generates it and the other waits, then reuses it.
    """
    from filelock import FileLock, Timeout

    folder = preset_folder(root, preset, seed)
    if (folder / "synthetic.json").exists():
        return folder
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        lock = FileLock(Path(root) / f".{folder.name}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            log.warning("another process is generating synthetic-%s under %s; waiting for it", preset, root)
            lock.acquire()
    except OSError as exc:
        raise DataError(f"cannot write the synthetic dataset under {root}: {exc.strerror}. "
                        "Pass --data-root or set REIDBENCH_DATA to a writable folder.") from None  # fmt: skip
    try:
        if (folder / "synthetic.json").exists():  # the process we waited for made it
            return folder
        p = PRESETS[preset]
        total = p.train_images + p.query_images + p.gallery_images + p.distractors + p.junk + p.extra_train_images
        tmp = folder.with_name(folder.name + ".partial")
        if tmp.exists():  # left by an interrupted generation (a live one would hold the lock)
            shutil.rmtree(tmp)
        if folder.exists():
            raise DataError(f"{folder} exists but has no synthetic.json, so it is not a finished generation; "
                            "delete it and run again to regenerate it")  # fmt: skip
        log.info("generating synthetic preset %s under %s", preset, folder)
        from reidbench.progress import bar as tqdm

        with tqdm(total=total, desc=f"synthetic {preset}", unit="img", disable=not show_progress, leave=False) as bar:
            generate(p, tmp, seed=seed, progress=bar.update)
        tmp.rename(folder)  # atomic: an interrupted generation never looks finished
        return folder
    finally:
        lock.release()


def _loader(preset: str) -> Callable[[Path], ReIDDataset]:
    def load(root: Path) -> ReIDDataset:
        from reidbench.data.layouts import read_market_layout

        folder = ensure_generated(Path(root), preset)
        return read_market_layout(folder, name=f"synthetic-{preset}")

    return load


for _name, _p in PRESETS.items():
    register_dataset(
        DatasetEntry(
            name=f"synthetic-{_name}",
            description=f"synthetic, {_p.height}x{_p.width}: {_p.description}",
            folder=f"{_folder_name(_p, _p.seed)} (generated on first use)",
            load=_loader(_name),
            synthetic=True,
            reference="reidbench synthetic generator (reidbench/data/synthetic.py)",
        )
    )
