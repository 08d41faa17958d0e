"""One way to derive seeds: every random stream in reidbench is keyed by (run seed, stream, index).

Attacks draw each image's randomness from ``stream_seed(seed, attack name, image index)``, so no
random draw depends on the batch size or order. Defenses draw each evaluation draw's and each
chain part's randomness from the same function under their own stream names. Nothing reads the
global RNG, so a resumed run gives the numbers of an uninterrupted one.
"""

from __future__ import annotations

import zlib

import torch

_MASK64 = (1 << 64) - 1


def _mix64(z: int) -> int:
    """SplitMix64's finaliser: a well-spread 64-bit hash of ``z``."""
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def stream_seed(seed: int, stream: str, index: int) -> int:
    """The seed of element ``index`` of stream ``stream`` under run seed ``seed`` (63 bits)."""
    h = _mix64(int(seed) & _MASK64)
    h = _mix64(h ^ zlib.crc32(stream.encode()))
    return _mix64(h ^ (int(index) & _MASK64)) >> 1  # torch seeds must fit in a signed int64


def generators(seed: int, stream: str, index: torch.Tensor) -> list[torch.Generator]:
    """One CPU generator per element. Draws are made on CPU and moved, so they match on every device."""
    return [torch.Generator().manual_seed(stream_seed(seed, stream, int(i))) for i in index.tolist()]


def derive_seed(seed: int, index: int) -> int:
    """An independent seed for part ``index`` of a defense chain seeded with ``seed``."""
    return stream_seed(seed, "defense-part", index)


def draw_seed(seed: int, draw: int) -> int:
    """The defense seed for evaluation draw ``draw`` of a cell seeded with ``seed`` (-1: crafting)."""
    return stream_seed(seed, "defense-draw", draw)
