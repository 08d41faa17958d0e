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
* :func:`plot_perturbations` -- the adversarial perturbation, amplified by a stated factor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from reidbench.eval.results import CellArtifact, CellResult
from reidbench.reports import cells as C
from reidbench.reports import style as S

Artifacts = Mapping[str, CellArtifact]


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
    fig = S.new_figure(0.7 + (3.2 if nr == 1 else 2.6) * nr + 0.17 * math.ceil(len(rows) / 3))
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
    fig = S.new_figure(1.3 + 0.32 * len(rows) + 0.06 * max(len(alab[a]) for a in attacks))
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


@S.styled
def plot_feature_map_bars(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> Figure | None:
    """ETNDNet Fig. 6a per model: clean, each input occlusion and each feature-map perturbation."""
    g = _main_grid(records, manifest)
    if g is None:
        return None
    fmap = [a for a in g.attacks if g.family.get(a.attack) == "feature-map"]
    if not fmap:
        return None
    occl = [a for a in g.attacks if g.family.get(a.attack) == "occlusion"]
    rows = [k for k in g.attack_rows if k.defense == "none" and g.clean(k) is not None and any(g.headline_cell(k, a) for a in fmap)]
    if not rows:
        return None
    rows = rows[:6]
    conds = [C.AttackKey("none"), *occl, *fmap]
    alab, rlab = C.attack_labels(g.attacks), C.row_labels(rows)
    nr, nc = _grid_shape(len(rows), 2)
    fig = S.new_figure(0.6 + 2.5 * nr)
    axes = fig.subplots(nr, nc, squeeze=False, sharey=True)
    width = 0.38
    legend: list[Any] = []
    for ax, k in zip(axes.flat, rows, strict=False):
        x = np.arange(len(conds))
        vals = {m: [getattr(g.at(k, a, g.headline_eps.get(a), g.headline_area.get(a)), m, np.nan)
                    if g.at(k, a, g.headline_eps.get(a), g.headline_area.get(a)) is not None else np.nan for a in conds]
                for m in ("rank1", "mAP")}  # fmt: skip
        b1 = ax.bar(x - width / 2, vals["rank1"], width, label="Rank-1", **S.bar_style(4) | {"hatch": "////"})
        b2 = ax.bar(x + width / 2, vals["mAP"], width, label="mAP", **S.bar_style(0))
        for cont in (b1, b2):
            ax.bar_label(cont, fmt="%.1f", fontsize=5.5, padding=1.5)
        clean_map = vals["mAP"][0]
        if not np.isnan(clean_map):
            ax.axhline(clean_map, color="#444444", linestyle=":", linewidth=0.8, zorder=0)
        ax.set_xticks(x, [alab[a] for a in conds], rotation=30, ha="right", rotation_mode="anchor")
        ax.set_title(rlab[k])
        ax.grid(axis="x", visible=False)
        ax.set_ylim(0, 108)
        legend = [b1, b2]
        if len(occl) and len(fmap):
            ax.axvline(len(occl) + 0.5, color="#888888", linewidth=0.6)
    for ax in axes.flat[len(rows):]:
        ax.remove()
    for ax in axes[:, 0]:
        ax.set_ylabel("Rank-1 / mAP (%)")
    fig.legend(legend, ["Rank-1 (hatched)", "mAP (solid)"], loc="outside lower center", ncols=2)
    return fig


# -------------------------------------------------------------------------------------------------
# Pictures from artifacts
# -------------------------------------------------------------------------------------------------


def _hwc(img: np.ndarray) -> np.ndarray:
    """(3, H, W) uint8 -> (H, W, 3) uint8."""
    return np.ascontiguousarray(np.transpose(np.asarray(img), (1, 2, 0))).astype(np.uint8)


def _fit(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W, 3) image (thumbnails may differ in size)."""
    if img.shape[:2] == (h, w):
        return img
    ys = (np.arange(h) * img.shape[0] / h).astype(int)
    xs = (np.arange(w) * img.shape[1] / w).astype(int)
    return img[ys][:, xs]


def _ordered(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None) -> list[CellResult]:
    with_art = [r for r in records if r.cell_id in artifacts and r.config.attack != "none"]
    if not with_art:
        return []
    g = C.build_grid(with_art, manifest)
    pos = {k: i for i, k in enumerate(g.rows)}
    apos = {a: i for i, a in enumerate(g.attacks)}
    return sorted(with_art, key=lambda r: (pos[C.row_of(r)], apos[C.attack_of(r)], r.config.eps or 0, r.config.area or 0))


@S.styled
def plot_occlusion_heatmaps(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None,
                            *, max_cells: int = 2, max_samples: int = 6) -> Figure | None:  # fmt: skip
    """Occlusion-sensitivity maps (artifacts with ``heatmaps``) over their images, with contours."""
    cands = [r for r in _ordered(records, artifacts, manifest) if artifacts[r.cell_id].heatmaps is not None]
    cands.sort(key=lambda r: r.family != "occlusion")
    cands = cands[:max_cells]
    if not cands:
        return None
    ns = max(min(max_samples, len(artifacts[r.cell_id].clean)) for r in cands)
    heats = [np.asarray(artifacts[r.cell_id].heatmaps, dtype=float)[:ns] for r in cands]
    lo = min(float(np.nanmin(h)) for h in heats)
    hi = max(float(np.nanmax(h)) for h in heats)
    if not hi > lo:
        hi = lo + 1.0
    norm = Normalize(lo, hi)
    img0 = artifacts[cands[0].cell_id].clean[0]
    aspect = img0.shape[1] / img0.shape[2]
    cell_w = (S.PAGE_WIDTH_IN - 0.8) / ns
    fig = S.new_figure(0.5 + len(cands) * (2 * cell_w * aspect + 0.35))
    sub = fig.subfigures(len(cands), 1, squeeze=False)[:, 0]
    for sf, r, heat in zip(sub, cands, heats, strict=True):
        art = artifacts[r.cell_id]
        axes = sf.subplots(2, ns, squeeze=False)
        sf.suptitle(f"{r.config.label()}  (mAP {r.mAP:.1f})", fontsize=8, fontweight="bold")
        for j in range(ns):
            top, bot = axes[0, j], axes[1, j]
            for ax in (top, bot):
                ax.set_axis_off()
            if j >= len(art.clean):
                continue
            img = _hwc(art.clean[j])
            h, w = img.shape[:2]
            top.imshow(img)
            top.set_title(f"query {int(art.query_index[j])}", fontsize=6.5, fontweight="normal")
            bot.imshow(img)
            ext = (-0.5, w - 0.5, h - 0.5, -0.5)
            bot.imshow(heat[j], cmap=S.HEAT, norm=norm, alpha=0.6, extent=ext, interpolation="bilinear")
            if np.nanmax(heat[j]) > np.nanmin(heat[j]):
                levels = sorted({float(np.nanquantile(heat[j], q)) for q in (0.75, 0.95)})
                if len(levels) == 2:
                    bot.contour(heat[j], levels=levels, colors=["white", "white"], linewidths=[0.7, 1.2],
                                linestyles=["dashed", "solid"], extent=(-0.5, w - 0.5, -0.5, h - 0.5), origin="upper")  # fmt: skip
        axes[0, 0].text(-0.08, 0.5, "image", transform=axes[0, 0].transAxes, rotation=90, ha="right", va="center", fontsize=7)
        axes[1, 0].text(-0.08, 0.5, "sensitivity", transform=axes[1, 0].transAxes, rotation=90, ha="right", va="center", fontsize=7)
        cb = sf.colorbar(ScalarMappable(norm=norm, cmap=S.HEAT), ax=axes[1, :].tolist(), shrink=0.9, pad=0.02, aspect=15)
        cb.set_label("sensitivity", fontsize=7)
        cb.ax.tick_params(labelsize=6)
    return fig


def ranked_list_rows(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None) -> list[C.RowKey]:
    """The models (as evaluated, without the attack mode) that have ranked lists to show."""
    seen: list[C.RowKey] = []
    for r in _ordered(records, artifacts, manifest):
        k = C.row_of(r).clean_key
        if k not in seen and len(artifacts[r.cell_id].clean_topk):
            seen.append(k)
    return seen


@S.styled
def plot_ranked_lists(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None, *,
                      row: C.RowKey | None = None, max_rows: int = 6, top: int = 10) -> Figure | None:  # fmt: skip
    """JAD Fig. 1: one query and its top ``top`` gallery images, clean (first row) and under each
    attack with artifacts. Correct matches: green solid border and a check mark; wrong: red dashed
    border and a cross, so the figure reads in grayscale too."""
    rows = ranked_list_rows(records, artifacts, manifest)
    if not rows:
        return None
    row = row if row is not None else rows[0]
    cands = [r for r in _ordered(records, artifacts, manifest) if C.row_of(r).clean_key == row]
    if not cands:
        return None
    # a defended model: each attack's oblivious row next to its adaptive one
    order: dict[Any, int] = {}
    for i, r in enumerate(cands):
        order.setdefault(C.attack_of(r), i)
    cands.sort(key=lambda r: (order[C.attack_of(r)], r.config.eps or 0, r.config.area or 0, r.config.mode == "adaptive"))
    # the query shown: the one that most of these cells recorded
    counts: dict[int, int] = {}
    for r in cands:
        for q in np.asarray(artifacts[r.cell_id].query_index).tolist():
            counts[int(q)] = counts.get(int(q), 0) + 1
    q = max(sorted(counts), key=lambda x: counts[x])
    cands = [r for r in cands if q in np.asarray(artifacts[r.cell_id].query_index).tolist()][: max_rows - 1]
    first = artifacts[cands[0].cell_id]
    i0 = int(np.flatnonzero(np.asarray(first.query_index) == q)[0])
    h, w = first.clean.shape[2], first.clean.shape[3]
    lines: list[tuple[str, np.ndarray, list[np.ndarray], list[bool]]] = []
    lines.append((f"(a) clean — {row.label()}", first.clean[i0], [first.gallery_thumbs[j] for j in first.clean_topk[i0][:top]],
                  [bool(x) for x in first.clean_match[i0][:top]]))  # fmt: skip
    for n, r in enumerate(cands):
        art = artifacts[r.cell_id]
        i = int(np.flatnonzero(np.asarray(art.query_index) == q)[0])
        label = f"({chr(ord('b') + n)}) {_attack_text(r)}"
        lines.append((label, art.attacked[i], [art.gallery_thumbs[j] for j in art.attacked_topk[i][:top]],
                      [bool(x) for x in art.attacked_match[i][:top]]))  # fmt: skip
    k = max(len(t) for _, _, t, _ in lines)
    gap, qgap, title_h, rank_h = max(2, w // 10), max(6, w // 3), max(10, h // 6), max(7, h // 9)
    row_h = title_h + rank_h + h + gap
    width = w + qgap + k * (w + gap)
    canvas = np.full((row_h * len(lines), width, 3), 255, dtype=np.uint8)
    boxes: list[tuple[float, float, bool | None]] = []
    texts: list[tuple[float, float, str, dict[str, Any]]] = []
    for li, (label, qimg, thumbs, match) in enumerate(lines):
        y0 = li * row_h + title_h + rank_h
        canvas[y0 : y0 + h, 0:w] = _fit(_hwc(qimg), h, w)
        boxes.append((0, y0, None))
        texts.append((0, li * row_h + title_h * 0.55, label, {"ha": "left", "va": "center", "fontsize": 7, "fontweight": "bold"}))
        texts.append((w / 2, y0 - rank_h * 0.45, "query", {"ha": "center", "va": "center", "fontsize": 6}))
        for j, (t, ok) in enumerate(zip(thumbs, match, strict=True)):
            x0 = w + qgap + j * (w + gap)
            canvas[y0 : y0 + h, x0 : x0 + w] = _fit(_hwc(t), h, w)
            boxes.append((x0, y0, ok))
            texts.append((x0 + w / 2, y0 - rank_h * 0.45, str(j + 1), {"ha": "center", "va": "center", "fontsize": 6}))
    fig = S.new_figure(S.PAGE_WIDTH_IN * canvas.shape[0] / canvas.shape[1] + 0.45)
    ax = fig.subplots()
    ax.imshow(canvas, interpolation="antialiased")
    ax.set_axis_off()
    lw = 1.8
    for x0, y0, hit in boxes:
        color = "black" if hit is None else (S.CORRECT if hit else S.WRONG)
        style: Any = "solid" if hit in (None, True) else (0, (2.0, 1.2))
        ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, edgecolor=color, linewidth=lw, linestyle=style))
        if hit is not None:
            ax.text(x0 + w - 1, y0 + h - 1, "✓" if hit else "✗", ha="right", va="bottom", fontsize=7, fontweight="bold",
                    color=color, bbox={"boxstyle": "square,pad=0.08", "facecolor": "white", "edgecolor": "none"})  # fmt: skip
    for tx, ty, txt, kw in texts:
        ax.text(tx, ty, txt, **kw)
    handles = [Rectangle((0, 0), 1, 1, fill=False, edgecolor=S.CORRECT, linewidth=lw),
               Rectangle((0, 0), 1, 1, fill=False, edgecolor=S.WRONG, linewidth=lw, linestyle=(0, (2.0, 1.2)))]  # fmt: skip
    fig.legend(handles, ["✓ same identity as the query", "✗ other identity"], loc="outside lower center", ncols=2)
    return fig


def _attack_text(r: CellResult) -> str:
    c = r.config
    s = c.attack
    if c.eps is not None:
        s += f" eps={c.eps:g}/255"
    if c.area is not None:
        s += f" area={c.area:g}"
    if c.surrogate:
        s += f" (transfer from {c.surrogate})"
    if c.target not in ("query", "none"):
        s += f" [{c.target} attacked]"
    if c.mode in ("oblivious", "adaptive"):
        s += f", {c.mode}"
    return s + f" — R1 {r.rank1:.1f}, mAP {r.mAP:.1f}"


PERTURBATION_FAMILIES = ("metric", "classification", "noise")


@S.styled
def plot_perturbations(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None, *,
                       max_rows: int = 5, samples: int = 2) -> Figure | None:  # fmt: skip
    """Clean image, attacked image and the perturbation ``0.5 + k (x_adv - x)`` for each budgeted
    input attack with artifacts; ``k`` is stated on every row."""
    cands = [r for r in _ordered(records, artifacts, manifest)
             if r.family in PERTURBATION_FAMILIES and r.config.target in ("query", "both")
             and np.any(artifacts[r.cell_id].attacked != artifacts[r.cell_id].clean)]  # fmt: skip
    if not cands:
        return None
    # one row per (attack, model as evaluated), at the largest budget recorded, then by model order
    picked: dict[tuple[Any, ...], CellResult] = {}
    for r in cands:
        key = (C.row_of(r), C.attack_of(r))
        if key not in picked or (r.config.eps or 0) > (picked[key].config.eps or 0):
            picked[key] = r
    chosen = list(picked.values())[:max_rows]
    first = artifacts[chosen[0].cell_id]
    h, w = first.clean.shape[2], first.clean.shape[3]
    ns = min(samples, min(len(artifacts[r.cell_id].clean) for r in chosen))
    gap, sgap, title_h, head_h = max(2, w // 16), max(8, w // 3), max(12, h // 5), max(8, h // 8)
    row_h = title_h + h + gap
    width = ns * 3 * (w + gap) + (ns - 1) * sgap
    canvas = np.full((head_h + row_h * len(chosen), width, 3), 255, dtype=np.uint8)
    texts: list[tuple[float, float, str, dict[str, Any]]] = []
    for s in range(ns):
        for c, name in enumerate(("clean x", "attacked x'", "(x' - x) × k + ½")):
            x0 = s * (3 * (w + gap) + sgap) + c * (w + gap)
            texts.append((x0 + w / 2, head_h * 0.5, name, {"ha": "center", "va": "center", "fontsize": 6}))
    for li, r in enumerate(chosen):
        art = artifacts[r.cell_id]
        y0 = head_h + li * row_h + title_h
        delta_all = art.attacked[:ns].astype(np.int16) - art.clean[:ns].astype(np.int16)
        peak = int(np.abs(delta_all).max()) or 1
        k = max(1, int(127.5 // peak))
        eps = r.config.eps
        over = eps is not None and peak > math.ceil(eps) + 1  # uint8 rounding allows one level
        budget = f"eps {eps:g}/255; " if eps is not None else ""
        texts.append((0, y0 - title_h * 0.5, f"{C.row_of(r).label()} — {C.attack_labels([C.attack_of(r)])[C.attack_of(r)]}: {budget}"
                      f"measured max |x' - x| = {peak}/255{' EXCEEDS eps' if over else ''}; shown × {k}",
                      {"ha": "left", "va": "center", "fontsize": 7, "fontweight": "bold", "color": S.WRONG if over else "black"}))  # fmt: skip
        for s in range(ns):
            xs = s * (3 * (w + gap) + sgap)
            x, xa = _hwc(art.clean[s]), _hwc(art.attacked[s])
            d = np.clip(127.5 + k * (xa.astype(np.float32) - x.astype(np.float32)), 0, 255).astype(np.uint8)
            for c, im in enumerate((x, xa, d)):
                canvas[y0 : y0 + h, xs + c * (w + gap) : xs + c * (w + gap) + w] = _fit(im, h, w)
    fig = S.new_figure(S.PAGE_WIDTH_IN * canvas.shape[0] / canvas.shape[1] + 0.1)
    ax = fig.subplots()
    ax.imshow(canvas, interpolation="antialiased")
    ax.set_axis_off()
    for tx, ty, txt, kw in texts:
        ax.text(tx, ty, txt, **kw)
    return fig
