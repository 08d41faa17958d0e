"""The report's pictures: the images a run kept as artifacts, drawn page by page.

* :func:`plot_occlusion_heatmaps` -- occlusion-sensitivity maps (AOS) over sample images.
* :func:`plot_ranked_lists` -- JAD Fig. 1: a query and its top-10, clean vs each attack.
* :func:`plot_perturbations` -- the adversarial perturbations, amplified by a stated factor.

Each ``*_pages`` function splits its cells so that the pages together cover every one; see
:mod:`reidbench.reports.plots` for the figures drawn from the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
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
    """The records with artifacts (re-ranked views excluded: the pictures show the plain ranking),
    in table order: row, attack, eps, area."""
    with_art = [r for r in records if r.cell_id in artifacts and r.config.attack != "none" and not C.is_reranked(r)]
    if not with_art:
        return []
    g = C.build_grid(with_art, manifest)
    pos = {k: i for i, k in enumerate(g.rows)}
    apos = {a: i for i, a in enumerate(g.attacks)}
    return sorted(with_art, key=lambda r: (pos[C.row_of(r)], apos[C.attack_of(r)], r.config.eps or 0, r.config.area or 0))


def _page(every: Sequence[CellResult], cells: Sequence[CellResult] | None,
          first_page: Callable[[], Sequence[CellResult]]) -> list[CellResult]:
    """The cells of the page to draw (``cells``, default the first page), limited to ``every``,
    the cells the figure is about."""
    ids = {r.cell_id for r in every}
    return [r for r in (cells if cells is not None else first_page()) if r.cell_id in ids]


def paginate(items: Sequence[Any], per_page: int) -> list[list[Any]]:
    """``items`` in pages of at most ``per_page``, as even as possible (no lone last item)."""
    items = list(items)
    if not items:
        return []
    n = math.ceil(len(items) / max(1, per_page))
    size = math.ceil(len(items) / n)
    return [items[i : i + size] for i in range(0, len(items), size)]


def headline_ids(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> set[str]:
    """The cells the headline tables show: each attack at its headline eps/area, on every row."""
    out: set[str] = set()
    for g in C.grids(records, manifest):
        for (_, a, eps, area), r in g.cells.items():
            if not a.is_clean and not C.is_reranked(r) and eps == g.headline_eps.get(a) and area == g.headline_area.get(a):
                out.add(r.cell_id)
    return out


# -- occlusion sensitivity --------------------------------------------------------------------------


def occlusion_heatmap_cells(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None) -> list[CellResult]:
    """Every cell whose artifact has occlusion-sensitivity maps, occlusions first."""
    cands = [r for r in _ordered(records, artifacts, manifest) if artifacts[r.cell_id].heatmaps is not None]
    return sorted(cands, key=lambda r: not r.kind.occludes)


HEATMAP_LINES = 5  # image rows + map rows per page


def occlusion_heatmap_pages(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None,
                            per_page: int = HEATMAP_LINES - 1) -> list[list[CellResult]]:  # fmt: skip
    """:func:`occlusion_heatmap_cells` in pages (each page also repeats the row of images)."""
    return paginate(occlusion_heatmap_cells(records, artifacts, manifest), per_page)


@S.styled
def plot_occlusion_heatmaps(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None,
                            *, cells: Sequence[CellResult] | None = None, max_samples: int = 6) -> Figure | None:  # fmt: skip
    """Occlusion-sensitivity maps (artifacts with ``heatmaps``) over their images, with contours.

    One row per cell (``cells``: a page of :func:`occlusion_heatmap_pages`; default the first
    page), under a row of the sample images; a cell whose samples are other images gets its own
    image row. The colour scale is shared by every cell of the run, so pages compare."""
    every = occlusion_heatmap_cells(records, artifacts, manifest)
    if not every:
        return None
    cands = _page(every, cells, lambda: occlusion_heatmap_pages(records, artifacts, manifest)[0])
    if not cands:
        return None
    ns = max(min(max_samples, len(artifacts[r.cell_id].clean)) for r in every)
    heats_all = [np.asarray(artifacts[r.cell_id].heatmaps, dtype=float)[:ns] for r in every]
    lo = min(float(np.nanmin(h)) for h in heats_all)
    hi = max(float(np.nanmax(h)) for h in heats_all)
    if not hi > lo:
        hi = lo + 1.0
    norm = Normalize(lo, hi)
    lines: list[tuple[str, CellResult]] = []
    shown: tuple[int, ...] | None = None
    for r in cands:
        q = tuple(int(x) for x in np.asarray(artifacts[r.cell_id].query_index)[:ns])
        if q != shown:
            lines.append(("image", r))
            shown = q
        lines.append(("heat", r))
    img0 = artifacts[cands[0].cell_id].clean[0]
    aspect = img0.shape[1] / img0.shape[2]
    title_in, bar_in = 0.22, 0.45
    cell_h = min((S.MAX_HEIGHT_IN - bar_in) / len(lines) - title_in, 2.0 * (S.PAGE_WIDTH_IN - 0.4) / ns / 2 * aspect)
    cell_w = cell_h / aspect
    fig = S.new_figure(len(lines) * (cell_h + title_in) + bar_in, width_in=max(cell_w * ns + 0.4, 3.5))
    subs = fig.subfigures(len(lines) + 1, 1, squeeze=False, height_ratios=[cell_h + title_in] * len(lines) + [bar_in])[:, 0]
    for sf, (kind, r) in zip(subs, lines, strict=False):
        art = artifacts[r.cell_id]
        axes = sf.subplots(1, ns, squeeze=False)[0]
        if kind == "image":
            sf.suptitle("sample query images", fontsize=7, fontweight="bold")
        else:
            sf.suptitle(f"{C.cell_label(r)}  (mAP {r.mAP:.1f}): sensitivity", fontsize=7, fontweight="bold")
        heat = np.asarray(art.heatmaps, dtype=float)
        for j, ax in enumerate(axes):
            ax.set_axis_off()
            if j >= len(art.clean):
                continue
            img = _hwc(art.clean[j])
            h, w = img.shape[:2]
            ax.imshow(img)
            if kind == "image":
                ax.set_title(f"query {int(art.query_index[j])}", fontsize=6, fontweight="normal")
                continue
            ext = (-0.5, w - 0.5, h - 0.5, -0.5)
            ax.imshow(heat[j], cmap=S.HEAT, norm=norm, alpha=0.6, extent=ext, interpolation="bilinear")
            if np.nanmax(heat[j]) > np.nanmin(heat[j]):
                levels = sorted({float(np.nanquantile(heat[j], q)) for q in (0.75, 0.95)})
                if len(levels) == 2:
                    ax.contour(heat[j], levels=levels, colors=["white", "white"], linewidths=[0.7, 1.2],
                               linestyles=["dashed", "solid"], extent=(-0.5, w - 0.5, -0.5, h - 0.5), origin="upper")  # fmt: skip
    cax = subs[-1].add_axes((0.2, 0.55, 0.6, 0.18))
    cb = subs[-1].colorbar(ScalarMappable(norm=norm, cmap=S.HEAT), cax=cax, orientation="horizontal")
    cb.set_label("sensitivity (one scale for every map of the run; brighter = occluding there harms more)", fontsize=6.5)
    cb.ax.tick_params(labelsize=6)
    return fig


# -- ranked lists -----------------------------------------------------------------------------------


RANKED_ROWS = 6  # rows per page of ranked lists, the clean row included


def ranked_list_rows(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None) -> list[C.RowKey]:
    """The models (as evaluated, without the attack mode) that have ranked lists to show."""
    seen: list[C.RowKey] = []
    for r in _ordered(records, artifacts, manifest):
        k = C.row_of(r).clean_key
        if k not in seen and len(artifacts[r.cell_id].clean_topk):
            seen.append(k)
    return seen


def _ranked_cells(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None,
                  row: C.RowKey) -> tuple[list[CellResult], int | None]:  # fmt: skip
    """The attacked cells of ``row`` with ranked lists (each attack's oblivious row next to its
    adaptive one), and the query they show: the one most of them recorded."""
    cands = [r for r in _ordered(records, artifacts, manifest) if C.row_of(r).clean_key == row and len(artifacts[r.cell_id].clean_topk)]
    if not cands:
        return [], None
    order: dict[Any, int] = {}
    for i, r in enumerate(cands):
        order.setdefault(C.attack_of(r), i)
    cands.sort(key=lambda r: (order[C.attack_of(r)], r.config.eps or 0, r.config.area or 0, r.config.mode == "adaptive"))
    counts: dict[int, int] = {}
    for r in cands:
        for q in np.asarray(artifacts[r.cell_id].query_index).tolist():
            counts[int(q)] = counts.get(int(q), 0) + 1
    q = max(sorted(counts), key=lambda x: counts[x])
    return [r for r in cands if q in np.asarray(artifacts[r.cell_id].query_index).tolist()], q


def ranked_list_pages(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None, *,
                      per_page: int = RANKED_ROWS - 1, headline_only: bool = True
                      ) -> list[tuple[C.RowKey, list[CellResult], list[CellResult]]]:  # fmt: skip
    """Pages of ranked lists: ``(row, attacked cells on this page, cells of the row left out)``.

    Every attacked cell of a row with a ranked list is on one of the row's pages, except, with
    ``headline_only``, the points of a sweep other than the attack's headline budget (their
    numbers are in the sweep tables); those are returned as left out, on each of the row's pages.
    """
    heads = headline_ids(records, manifest) if headline_only else None
    out = []
    for row in ranked_list_rows(records, artifacts, manifest):
        cells, _ = _ranked_cells(records, artifacts, manifest, row)
        shown = [r for r in cells if heads is None or r.cell_id in heads]
        left = [r for r in cells if r not in shown]
        for page in paginate(shown, per_page):
            out.append((row, page, left))
    return out


@S.styled
def plot_ranked_lists(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None, *,
                      row: C.RowKey | None = None, cells: Sequence[CellResult] | None = None, max_rows: int = RANKED_ROWS,
                      top: int = 10) -> Figure | None:  # fmt: skip
    """JAD Fig. 1: one query and its top ``top`` gallery images, clean (first row) and under each
    attack with artifacts. Correct matches: green solid border and a check mark; wrong: red dashed
    border and a cross, so the figure reads in grayscale too.

    ``cells``: the attacked cells to draw (a page of :func:`ranked_list_pages`); default the
    row's first ``max_rows - 1``. Every page of a row shows the same query."""
    rows = ranked_list_rows(records, artifacts, manifest)
    if not rows:
        return None
    row = row if row is not None else rows[0]
    every, q = _ranked_cells(records, artifacts, manifest, row)
    if not every or q is None:
        return None
    ids = {r.cell_id for r in (cells if cells is not None else every[: max_rows - 1])}
    cands = [r for r in every if r.cell_id in ids]
    if not cands:
        return None
    letters = {r.cell_id: i for i, r in enumerate(every)}  # (b), (c)... continue across the pages
    first = artifacts[cands[0].cell_id]
    i0 = int(np.flatnonzero(np.asarray(first.query_index) == q)[0])
    h, w = first.clean.shape[2], first.clean.shape[3]
    lines: list[tuple[str, np.ndarray, list[np.ndarray], list[bool]]] = []
    lines.append((f"(a) clean — {row.label()}", first.clean[i0], [first.gallery_thumbs[j] for j in first.clean_topk[i0][:top]],
                  [bool(x) for x in first.clean_match[i0][:top]]))  # fmt: skip
    for r in cands:
        art = artifacts[r.cell_id]
        i = int(np.flatnonzero(np.asarray(art.query_index) == q)[0])
        label = f"({_letter(letters[r.cell_id] + 1)}) {_attack_text(r)}"
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


def _letter(i: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa: row letters that never run out."""
    s = ""
    i += 1
    while i:
        i, rem = divmod(i - 1, 26)
        s = chr(ord("a") + rem) + s
    return s


def _attack_text(r: CellResult) -> str:
    mode = f", {r.config.mode}" if r.config.mode in ("oblivious", "adaptive") else ""
    return f"{C.attack_text(r)}{mode} — R1 {r.rank1:.1f}, mAP {r.mAP:.1f}"


# -- perturbations ----------------------------------------------------------------------------------


PERTURBATION_ROWS = 4  # models per page
PERTURBATION_COLUMNS = 7  # attacked cells per page, beside the clean image


def perturbation_cells(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None) -> list[CellResult]:
    """Every input attack bounded in L-inf with a stored attacked query that differs from the clean one."""
    return [r for r in _ordered(records, artifacts, manifest)
            if r.kind.linf_family and r.config.target in ("query", "both")
            and np.any(artifacts[r.cell_id].attacked != artifacts[r.cell_id].clean)]  # fmt: skip


def _perturbation_axes(cells: Sequence[CellResult]) -> tuple[list[C.RowKey], list[tuple[C.AttackKey, float | None]]]:
    rows: list[C.RowKey] = []
    cols: list[tuple[C.AttackKey, float | None]] = []
    for r in cells:
        k, col = C.row_of(r), (C.attack_of(r), r.config.eps)
        if k not in rows:
            rows.append(k)
        if col not in cols:
            cols.append(col)
    fams = C.families(cells)
    order = {a: i for i, a in enumerate(C.sort_attacks({a for a, _ in cols}, fams))}
    return rows, sorted(cols, key=lambda c: (order[c[0]], c[1] or 0))


def perturbation_pages(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None, *,
                       rows_per_page: int = PERTURBATION_ROWS, cols_per_page: int = PERTURBATION_COLUMNS
                       ) -> list[list[CellResult]]:  # fmt: skip
    """:func:`perturbation_cells` in pages of at most ``rows_per_page`` models (as evaluated) and
    ``cols_per_page`` (attack, eps) columns; together the pages hold every such cell once."""
    cells = perturbation_cells(records, artifacts, manifest)
    rows, cols = _perturbation_axes(cells)
    pages = []
    for cg in paginate(cols, cols_per_page):
        for rg in paginate(rows, rows_per_page):
            page = [r for r in cells if C.row_of(r) in rg and (C.attack_of(r), r.config.eps) in cg]
            if page:
                pages.append(page)
    return pages


@S.styled
def plot_perturbations(records: Sequence[CellResult], artifacts: Artifacts, manifest: dict[str, Any] | None = None, *,
                       cells: Sequence[CellResult] | None = None) -> Figure | None:  # fmt: skip
    """A grid: one row per model as evaluated, the clean query first, then for each budgeted input
    attack the perturbation ``0.5 + k (x_adv - x)`` of that query, ``k`` and the largest change
    measured over every stored sample written on the panel.

    ``cells``: one page of :func:`perturbation_pages` (default the first)."""
    every = perturbation_cells(records, artifacts, manifest)
    if not every:
        return None
    cells = _page(every, cells, lambda: perturbation_pages(records, artifacts, manifest)[0])
    if not cells:
        return None
    rows, cols = _perturbation_axes(cells)
    by = {(C.row_of(r), C.attack_of(r), r.config.eps): r for r in cells}
    rlab = C.row_labels(rows)
    alab = C.attack_labels(sorted({a for a, _ in cols}, key=lambda a: [c[0] for c in cols].index(a)))
    first = artifacts[cells[0].cell_id].clean[0]
    aspect = first.shape[1] / first.shape[2]
    nc = len(cols) + 1
    cell_w = min((S.PAGE_WIDTH_IN - 0.3) / nc, 1.0)
    head_in = 0.42
    fig = S.new_figure(len(rows) * (cell_w * aspect + head_in) + 0.2, width_in=cell_w * nc + 0.3)
    axes = fig.subplots(len(rows), nc, squeeze=False)
    for i, k in enumerate(rows):
        clean_shown = False
        for j, (a, eps) in enumerate(cols, start=1):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            r = by.get((k, a, eps))
            if r is None:
                ax.text(0.5, 0.5, "not run", ha="center", va="center", fontsize=6, color="#777777", transform=ax.transAxes)
                ax.grid(False)
                continue
            art = artifacts[r.cell_id]
            delta_all = art.attacked.astype(np.int16) - art.clean.astype(np.int16)
            peak = int(np.abs(delta_all).max()) or 1
            kk = max(1, int(127.5 // peak))
            over = eps is not None and peak > math.ceil(eps) + 1  # uint8 rounding allows one level
            x, xa = _hwc(art.clean[0]), _hwc(art.attacked[0])
            d = np.clip(127.5 + kk * (xa.astype(np.float32) - x.astype(np.float32)), 0, 255).astype(np.uint8)
            ax.imshow(d)
            ax.grid(False)
            head = f"{alab[a]}\n" + (f"eps {eps:g}/255\n" if eps is not None else "") + f"max {peak}/255{' > eps!' if over else ''}, ×{kk}"
            ax.set_title(head, fontsize=5.5, fontweight="bold" if over else "normal", color=S.WRONG if over else "black", pad=2)
            if not clean_shown:
                axes[i, 0].imshow(x)
                axes[i, 0].set_title(f"clean x\nquery {int(art.query_index[0])}", fontsize=5.5, pad=2)
                clean_shown = True
        ax0 = axes[i, 0]
        ax0.set_xticks([])
        ax0.set_yticks([])
        ax0.grid(False)
        for s in ax0.spines.values():
            s.set_visible(False)
        ax0.set_ylabel(rlab[k], fontsize=6.5, fontweight="bold")
    return fig
