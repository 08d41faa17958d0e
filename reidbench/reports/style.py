"""One look for every reidbench figure: A4-sized, print- and grayscale-safe, colour-blind-safe.

Series are told apart by marker *and* line style *and* colour (Okabe-Ito palette), bars by hatch
*and* colour, so a figure still reads when printed in black and white. Sequential maps
(``cividis``, ``magma``) have monotone lightness. Figures are built with the object-oriented API
(``matplotlib.figure.Figure``), never through ``pyplot``: no global figure registry, no GUI
backend, and rendering works the same under any ``MPLBACKEND``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import matplotlib
from matplotlib.figure import Figure

# Okabe & Ito (2008) without its yellow (too light on white), then Paul Tol's "muted" colours
# that differ from them: 13 colours, ordered so neighbours also differ in hue and lightness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#000000",
           "#332288", "#999933", "#882255", "#44AA99", "#888888", "#AA4499")  # fmt: skip
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
LINESTYLES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (5, 1.5)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 1)))
HATCHES = ("", "////", "....", "xxxx", "\\\\\\\\", "oo", "++", "--")
CORRECT = "#006E50"  # a dark bluish green: darker than WRONG in grayscale too
WRONG = "#E66100"  # orange-vermillion, drawn dashed
SEQUENTIAL = "cividis"
HEAT = "magma"

PAGE_WIDTH_IN = 6.5  # A4 (21 cm) less 2 x 2 cm margins, a little under 17 cm
MAX_HEIGHT_IN = 8.6  # leaves room on the page for a heading and a caption

RC: dict[str, Any] = {
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 8.5,
    "axes.titleweight": "bold",
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "figure.titlesize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#BBBBBB",
    "grid.linewidth": 0.5,
    "grid.alpha": 0.6,
    "lines.linewidth": 1.4,
    "lines.markersize": 4.5,
    "hatch.linewidth": 0.6,
    "image.interpolation": "nearest",
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.04,
    "pdf.fonttype": 42,
    "svg.fonttype": "none",
}

F = TypeVar("F", bound=Callable[..., Any])


def styled(fn: F) -> F:
    """Build the figure under :data:`RC` (text sizes are fixed when artists are created)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(RC):  # type: ignore[arg-type]
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(height_in: float, width_in: float = PAGE_WIDTH_IN) -> Figure:
    """A figure at print size: 1 inch in the figure is 1 inch on the A4 page."""
    fig = Figure(figsize=(width_in, min(height_in, MAX_HEIGHT_IN)), layout="constrained")
    return fig


def series_style(i: int) -> dict[str, Any]:
    """The i-th series: colour, marker and line style all change, so each survives grayscale.

    The three cycles have coprime lengths (13, 11, 7): the first 13 series have 13 different
    colours, and no two of the first 1001 share colour, marker and line style; past the
    palette, markers are hollow as well."""
    return {
        "color": PALETTE[i % len(PALETTE)],
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": LINESTYLES[i % len(LINESTYLES)],
        "markerfacecolor": "white" if (i // len(PALETTE)) % 2 else PALETTE[i % len(PALETTE)],
    }


def bar_style(i: int) -> dict[str, Any]:
    return {"color": PALETTE[i % len(PALETTE)], "hatch": HATCHES[i % len(HATCHES)], "edgecolor": "black", "linewidth": 0.6}


def save(fig: Figure, path_or_buf: Any, fmt: str = "png", dpi: int = 200) -> None:
    with matplotlib.rc_context(RC):  # type: ignore[arg-type]
        fig.savefig(path_or_buf, format=fmt, dpi=dpi)
