"""Number and count formatting shared by the verdicts, the summary and the renderers."""

from __future__ import annotations

import math


def num(x: float | None) -> str:
    """``41.30``; ``nan`` for a NaN or a missing (null) golden value."""
    return "nan" if x is None or math.isnan(x) else f"{x:.2f}"


def signed(x: float) -> str:
    """``+1.25`` / ``-11.30``; ``nan`` for NaN."""
    return "nan" if math.isnan(x) else f"{x:+.2f}"


def plural(k: int, word: str) -> str:
    """``1 cell``, ``3 cells``."""
    return f"{k} {word}{'' if k == 1 else 's'}"
