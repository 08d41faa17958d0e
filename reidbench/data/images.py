"""Decoding image files into tensors.

Splits are small enough to hold in memory as uint8 (the synthetic ``market`` preset's gallery is
1.6 GB at 256x128), so images are decoded once, resized to the model's input size, and kept as a
(N, 3, H, W) uint8 tensor. Decoded splits are cached under ``~/.cache/reidbench/images`` keyed by
the split's file list and the size, so a second run does not decode again. A corrupt or unreadable
image raises :class:`DataError` naming the file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from reidbench.data.base import Sample
from reidbench.errors import DataError

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    base = os.environ.get("REIDBENCH_CACHE")
    if base:
        return Path(base).expanduser() / "images"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reidbench" / "images"


#: Re-ID crops are a few thousand pixels; a file far larger is a mistake or a decompression bomb.
DEFAULT_MAX_PIXELS = 50_000_000
MAX_PIXELS_ENV = "REIDBENCH_MAX_PIXELS"


def max_pixels() -> int:
    """The largest image (width x height) reidbench decodes: ``$REIDBENCH_MAX_PIXELS`` or 50 M."""
    text = os.environ.get(MAX_PIXELS_ENV)
    if text is None:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"{MAX_PIXELS_ENV}={text!r} is not a positive whole number of pixels; unset it or use e.g. 50000000")
    return value


def read_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Decode one file as RGB uint8 (H, W, 3) resized to ``size`` = (H, W) with bilinear filtering.

    The header is read first, and an image over :func:`max_pixels` is refused before it is decoded.
    """
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > limit:
                    raise _too_large(path, w, h, limit)
                im = im.convert("RGB")
                if im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.BILINEAR)
                return np.asarray(im, dtype=np.uint8)
    except Image.DecompressionBombError:
        raise _too_large(path, 0, 0, limit) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"cannot read image {path}: {type(exc).__name__}: {exc}. Replace or remove the corrupt file."
        ) from None


def _too_large(path: str | Path, w: int, h: int, limit: int) -> DataError:
    dims = f"{w}x{h} = {w * h:,} pixels" if w else "over twice PIL's own limit"
    return DataError(f"image {path} is {dims}, over the limit of {limit:,} pixels; re-ID crops are small, so check "
                     f"the file, or raise the limit with {MAX_PIXELS_ENV}=N")  # fmt: skip


def _key(samples: Sequence[Sample], size: tuple[int, int]) -> str:
    h = hashlib.sha256(f"{size}".encode())
    for s in samples:
        p = Path(s.path)
        try:
            st = p.stat()
        except OSError:
            raise DataError(f"image file missing: {p}. Was the dataset moved while in use?") from None
        h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load_images(
    samples: Sequence[Sample],
    size: tuple[int, int],
    *,
    use_cache: bool = True,
    workers: int = 4,
    desc: str | None = None,
) -> torch.Tensor:
    """All images of ``samples`` as a (N, 3, H, W) uint8 tensor, in order."""
    if not samples:
        return torch.empty(0, 3, *size, dtype=torch.uint8)
    cache_file = cache_dir() / f"{_key(samples, size)}.npy" if use_cache else None
    if cache_file is not None and cache_file.exists():
        try:
            arr = np.load(cache_file, mmap_mode=None, allow_pickle=False)
            if arr.shape == (len(samples), 3, *size):
                return torch.from_numpy(arr)
        except (OSError, ValueError):
            log.warning("ignoring unreadable image cache %s", cache_file)
    from reidbench.progress import bar as tqdm

    out = np.empty((len(samples), 3, *size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = read_image(samples[i].path, size).transpose(2, 0, 1)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(tqdm(pool.map(one, range(len(samples))), total=len(samples), desc=desc or "decoding",
                  unit="img", leave=False, disable=len(samples) < 2000))  # fmt: skip
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, out, allow_pickle=False)
        os.replace(tmp, cache_file)
    return torch.from_numpy(out)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0,1]."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x
