"""Figures of a run. Each function returns a :class:`~matplotlib.figure.Figure`, or ``None`` when
the run has no data for it (so a report skips the page instead of drawing empty axes).

Arguments are the records, the manifest (optional; for the attacks' default budgets and model
order) and, for the pictures, the artifacts as ``{cell_id: CellArtifact}``. A row (model,
defense, mode, re-ranking) keeps its colour, marker and line style in every figure.

* :func:`plot_eps_curves` -- mAP against eps, one panel per swept attack (robustness curves).
* :func:`plot_area_curves` -- mAP against the occluded area.
* :func:`plot_drop_heatmap` -- model x attack, the share of clean mAP the attack removes.
* :func:`plot_feature_map_bars` -- ETNDNet Fig. 6a: clean vs input occlusion vs feature-map
  perturbations, Rank-1 and mAP per model.
* :func:`plot_occlusion_heatmaps` -- occlusion-sensitivity maps (AOS) over sample images.
* :func:`plot_ranked_lists` -- JAD Fig. 1: a query and its top-10, clean vs each attack.
* :func:`plot_perturbations` -- the adversarial perturbations, amplified by a stated factor.

A figure with more cells than a page holds is drawn page by page: the ``*_pages`` functions
(:func:`feature_map_rows` with :func:`paginate`, :func:`occlusion_heatmap_pages`,
:func:`ranked_list_pages`, :func:`perturbation_pages`) split the cells, together covering every
one, and each plot function draws the page it is given (``rows=`` or ``cells=``; by default the
first). Ranked lists show each attack at its headline budget; the pages say which sweep points
they leave out. Pictures never show re-ranked views: the artifacts hold the plain ranking.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from reidbench.attack_types import Family
from reidbench.eval.results import CellResult
from reidbench.reports import cells as C
from reidbench.reports import style as S


def _main_grid(records: Sequence[CellResult], manifest: dict[str, Any] | None) -> C.Grid | None:
    gs = C.grids(records, manifest) if records else []
    return max(gs, key=lambda g: len(g.records)) if gs else None


def _row_styles(g: C.Grid) -> dict[C.RowKey, dict[str, Any]]:
    return {k: S.series_style(i) for i, k in enumerate(g.rows)}


def _grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


# -------------------------------------------------------------------------------------------------
# Curves
# -------------------------------------------------------------------------------------------------


@S.styled
def _sweep_figure(records: Sequence[CellResult], manifest: dict[str, Any] | None, param: str) -> Figure | None:
    g = _main_grid(records, manifest)
    if g is None:
        return None
    attacks = g.sweeps(param)
    if not attacks:
        return None
    styles, alab = _row_styles(g), C.attack_labels(g.attacks)
    rows = [k for k in g.attack_rows if any(len(g.sweep(k, a, param)) >= 2 for a in attacks)]
    rlab = C.row_labels(rows)
    nr, nc = _grid_shape(len(attacks))
    fig = S.new_figure(0.7 + (2.7 if nr == 1 else 2.4) * nr + 0.17 * math.ceil(len(rows) / 3))
    axes = fig.subplots(nr, nc, squeeze=False, sharey=True)
    handles: dict[str, Any] = {}
    values = [v for a in attacks for v in g.sweep_values(a, param)]
    percent_area = param == "area" and max(values) > 1.0
    for ax, a in zip(axes.flat, attacks, strict=False):
        for k in rows:
            pts = g.sweep(k, a, param)
            if len(pts) < 2:
                continue
            xs, ys = [v for v, _ in pts], [r.mAP for _, r in pts]
            clean = g.clean(k)
            if clean is not None:
                xs, ys = [0.0, *xs], [clean.mAP, *ys]
            (line,) = ax.plot(xs, ys, label=rlab[k], **styles[k])
            handles.setdefault(rlab[k], line)
        ax.set_title(alab[a])
        if param == "eps":
            ax.set_xlabel("eps (/255, L-inf)")
        else:
            ax.set_xlabel("occluded area (% of image)" if percent_area else "occluded area (fraction of image)")
        ax.set_xticks(sorted({0.0, *g.sweep_values(a, param)}))
    top = max((float(np.nanmax(ln.get_ydata())) for ax in axes.flat for ln in ax.get_lines()), default=1.0)
    axes[0, 0].set_ylim(0, max(1.0, top * 1.08))  # shared by every panel; set once, after all lines are drawn
    for ax in axes.flat[len(attacks):]:
        ax.remove()
    for ax in axes[:, 0]:
        ax.set_ylabel("mAP (%)")
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(3, len(handles)))
    return fig


def plot_eps_curves(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> Figure | None:
    """mAP against eps for every attack run at two or more budgets; eps 0 is the clean cell."""
    return _sweep_figure(records, manifest, "eps")


def plot_area_curves(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> Figure | None:
    """mAP against the occluded area for every occlusion run at two or more areas; 0 is clean."""
    return _sweep_figure(records, manifest, "area")


# -------------------------------------------------------------------------------------------------
# Heatmap and bars
# -------------------------------------------------------------------------------------------------


@S.styled
def plot_drop_heatmap(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> Figure | None:
    """Model x attack: the share of the row's clean mAP that the attack removes (%), annotated."""
    g = _main_grid(records, manifest)
    if g is None:
        return None
    attacks = [a for a in g.attacks if not a.is_clean]
    rows = [k for k in g.attack_rows if g.clean(k) is not None and any(g.headline_cell(k, a) for a in attacks)]
    if not attacks or not rows:
        return None
    m = np.full((len(rows), len(attacks)), np.nan)
    for i, k in enumerate(rows):
        clean = g.clean(k)
        for j, a in enumerate(attacks):
            r = g.headline_cell(k, a)
            if r is not None and clean is not None and clean.mAP > 0:
                m[i, j] = 100.0 * (clean.mAP - r.mAP) / clean.mAP
    rlab, alab = C.row_labels(rows), C.attack_labels(g.attacks)
    fig = S.new_figure(1.0 + 0.27 * len(rows) + 0.06 * max(len(alab[a]) for a in attacks))
    ax = fig.subplots()
    cmap = _cmap(S.SEQUENTIAL + "_r").with_extremes(bad="#EEEEEE")
    im = ax.imshow(np.clip(m, 0, 100), cmap=cmap, vmin=0, vmax=100, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(len(attacks)), [alab[a] for a in attacks], rotation=35, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(len(rows)), [rlab[k] for k in rows])
    ax.tick_params(length=0)
    for s in ax.spines.values():
        s.set_visible(False)
    small = 6.5 if len(attacks) <= 12 else 5.5
    for i in range(len(rows)):
        for j in range(len(attacks)):
            v = m[i, j]
            if np.isnan(v):
                ax.text(j, i, "–", ha="center", va="center", fontsize=small, color="#555555")
            else:
                dark = min(max(v, 0), 100) > 55
                ax.text(j, i, f"{v:.0f}" if v >= 0 else f"+{-v:.0f}", ha="center", va="center", fontsize=small,
                        color="white" if dark else "black")  # fmt: skip
    cb = fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01, aspect=30)
    cb.set_label("mAP lost (% of clean)")
    return fig


def _cmap(name: str) -> Any:
    from matplotlib import colormaps

    return colormaps[name].copy()


def feature_map_rows(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> list[C.RowKey]:
    """The rows of :func:`plot_feature_map_bars`: undefended models with a clean and a feature-map cell."""
    g = _main_grid(records, manifest)
    if g is None:
        return []
    fmap = [a for a in g.attacks if g.family.get(a.attack, Family.CLEAN).perturbs_feature_map]
    return [k for k in g.attack_rows if k.defense == "none" and g.clean(k) is not None and any(g.headline_cell(k, a) for a in fmap)]


FMAP_PANELS = 6  # panels (models) per page of the feature-map bars


@S.styled
def plot_feature_map_bars(records: Sequence[CellResult], manifest: dict[str, Any] | None = None, *,
                          rows: Sequence[C.RowKey] | None = None) -> Figure | None:  # fmt: skip
    """ETNDNet Fig. 6a per model: clean, each input occlusion and each feature-map perturbation.

    ``rows``: the models to draw (a page of :func:`feature_map_rows`); default all of them. Each
    bar carries its value, written vertically so neighbouring labels cannot overlap."""
    g = _main_grid(records, manifest)
    if g is None:
        return None
    fmap = [a for a in g.attacks if g.family.get(a.attack, Family.CLEAN).perturbs_feature_map]
    if not fmap:
        return None
    occl = [a for a in g.attacks if g.family.get(a.attack, Family.CLEAN).occludes]
    every = feature_map_rows(records, manifest)
    rows = [k for k in (rows if rows is not None else every) if k in every]
    if not rows:
        return None
    conds = [C.AttackKey("none"), *occl, *fmap]
    alab, rlab = C.attack_labels(g.attacks), C.row_labels(every)
    nr, nc = _grid_shape(len(rows), 2)
    fig = S.new_figure(0.6 + 2.7 * nr)
    axes = fig.subplots(nr, nc, squeeze=False, sharey=True)
    width = 0.4
    legend: list[Any] = []
    for ax, k in zip(axes.flat, rows, strict=False):
        x = np.arange(len(conds))
        cells = [g.at(k, a, g.headline_eps.get(a), g.headline_area.get(a)) for a in conds]
        vals = {m: [getattr(c, m) if c is not None else np.nan for c in cells] for m in ("rank1", "mAP")}
        b1 = ax.bar(x - width / 2, vals["rank1"], width, label="Rank-1", **S.bar_style(4) | {"hatch": "////"})
        b2 = ax.bar(x + width / 2, vals["mAP"], width, label="mAP", **S.bar_style(0))
        for cont in (b1, b2):
            ax.bar_label(cont, labels=[f"{v:.1f}" if np.isfinite(v) else "" for v in cont.datavalues],
                         fontsize=5, padding=1.5, rotation=90)  # fmt: skip
        clean_map = vals["mAP"][0]
        if not np.isnan(clean_map):
            ax.axhline(clean_map, color="#444444", linestyle=":", linewidth=0.8, zorder=0)
        ax.set_xticks(x, [alab[a] for a in conds], rotation=35, ha="right", rotation_mode="anchor")
        ax.set_title(rlab[k])
        ax.grid(axis="x", visible=False)
        ax.set_ylim(0, 118)
        ax.set_yticks(range(0, 101, 20))
        legend = [b1, b2]
        if len(occl) and len(fmap):
            ax.axvline(len(occl) + 0.5, color="#888888", linewidth=0.6)
    for ax in axes.flat[len(rows):]:
        ax.remove()
    for ax in axes[:, 0]:
        ax.set_ylabel("Rank-1 / mAP (%)")
    fig.legend(legend, ["Rank-1 (hatched)", "mAP (solid)"], loc="outside lower center", ncols=2)
    return fig


# The pictures live in reidbench.reports.pictures; their names stay importable from here.
from reidbench.reports.pictures import (  # noqa: E402,F401  re-exported
    HEATMAP_LINES,
    PERTURBATION_COLUMNS,
    PERTURBATION_ROWS,
    RANKED_ROWS,
    headline_ids,
    occlusion_heatmap_cells,
    occlusion_heatmap_pages,
    paginate,
    perturbation_cells,
    perturbation_pages,
    plot_occlusion_heatmaps,
    plot_perturbations,
    plot_ranked_lists,
    ranked_list_pages,
    ranked_list_rows,
)
