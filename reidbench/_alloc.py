"""Keep large CPU tensors on the heap instead of fresh mmaps (glibc only).

glibc serves allocations above its mmap threshold with a fresh mmap and gives them back on free,
so every 16 MB tensor of a batched CPU pipeline costs thousands of page faults. Measured here
(2 cores): the synthetic generator at 256x128 ran 3x faster (40.6 -> 122.5 img/s, system time
26.7 s -> 1.2 s) and a CPU attack cell 25% faster, with bitwise-identical outputs. Raising the
mmap and trim thresholds makes freed blocks reusable. It changes where memory comes from, never
a number. Elsewhere (macOS, musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done = False


def keep_large_allocations_on_heap(limit: int = 1 << 30) -> bool:
    """Call mallopt once per process; returns whether it took effect."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return _done
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, limit)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, limit))
    except (OSError, AttributeError):
        ok = False
    _done = ok
    log.debug("mallopt(mmap/trim threshold=%d): %s", limit, ok)
    return ok
