"""The content of a report, independent of its format: text tables, figures with captions, warnings.

:func:`build_report` turns a :class:`~reidbench.reports.run.RunData` into a :class:`Report`; the
PDF (:mod:`reidbench.reports.pdf`) and markdown/HTML (:mod:`reidbench.reports.markup`) writers
only lay it out, so every format says the same thing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from reidbench import __version__
from reidbench.eval.results import CellResult
from reidbench.reports import cells as C
from reidbench.reports import plots as P
from reidbench.reports import tables as T
from reidbench.reports import threats as TH
from reidbench.reports.run import RunData
from reidbench.reports.tables import Column, Table, all_tables


@dataclass
class FigureItem:
    """A figure and the words around it: what is shown and how to read it."""

    key: str
    title: str
    caption: str
    make: Callable[[], Figure | None]


@dataclass
class Report:
    title: str
    subtitle: str
    facts: list[tuple[str, str]]  # key/value lines for the title page
    command: str
    info_tables: list[Table]  # dataset, environment, models
    deviations: list[tuple[str, str]]  # (model, what differs from its paper)
    threat_lines: list[str]
    threat_tables: list[Table]
    tables: list[Table]
    figures: list[FigureItem]
    warnings: list[tuple[str, str]]  # (cell label, warning)
    notes: list[str] = field(default_factory=list)
    footer: str = ""


def _get(d: Any, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d if d is not None else default


def _text(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _label_table(key: str, title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> Table:
    cols = tuple(Column(h, label=True) for h in header)
    return Table(key, title, cols, tuple(tuple(_text(x) for x in r) for r in rows), caption=caption)


def _info_tables(run: RunData) -> tuple[list[Table], list[tuple[str, str]]]:
    m = run.manifest
    out: list[Table] = []
    ds = _get(m, "dataset", default={})
    ds_rows = []
    if isinstance(ds, dict) and ds:
        ds_rows.append([ds.get("name"), ds.get("fingerprint"), ds.get("n_query"), ds.get("n_gallery"), ds.get("n_train")])
    seen = {str(ds.get("name")) if isinstance(ds, dict) else None}
    for r in run.records:  # datasets in the records the manifest does not describe
        if r.config.dataset not in seen:
            seen.add(r.config.dataset)
            ds_rows.append([r.config.dataset, r.fingerprint, r.n_query, r.n_gallery, None])
    out.append(_label_table("dataset", "Dataset", ["name", "fingerprint", "query", "gallery", "train"], ds_rows))  # fmt: skip
    settings = [[label, _get(m, k)] for k, label in (("device", "device"), ("threads", "CPU threads"), ("seed", "seed"),
                ("created", "created"), ("reidbench_version", "reidbench")) if _get(m, k) is not None]  # fmt: skip
    settings.append(["cell seeds", ", ".join(map(str, sorted({r.config.seed for r in run.records})))])
    versions = _get(m, "versions", default={})
    packages = [[k, v] for k, v in versions.items()] if isinstance(versions, dict) else []
    env = [(settings[i] if i < len(settings) else ["", ""]) + (packages[i] if i < len(packages) else ["", ""])
           for i in range(max(len(settings), len(packages)))]  # fmt: skip
    out.append(_label_table("environment", "Environment", ["setting", "value", "package", "version"], env))
    models = _get(m, "models", default={})
    mrows, devs = [], []
    names = C.model_order(run.records, m)
    names += [n for n in (models if isinstance(models, dict) else {}) if n not in names]
    for n in names:
        e = models.get(n) if isinstance(models, dict) else None
        card = _get(e, "card", default={})
        ckpt = (_get(e, "checkpoint") or "none (untrained)") if isinstance(e, dict) else "–"
        mrows.append([n, _get(card, "method"), _get(card, "paper"), f"{ckpt}\n{_get(e, 'sha256') or 'no sha256'}"])
        for d in _get(card, "deviations", default=()) or ():
            devs.append((n, TH.plain(str(d))))
    out.append(_label_table("models", "Models", ["model", "method", "paper", "checkpoint / sha256"], mrows))
    defs = _get(m, "defenses", default={})
    if isinstance(defs, dict) and defs:
        rows = [[n, "yes" if _get(d, "random") else "no", "yes" if _get(d, "differentiable", default=True) else "no",
                 ("EOT" if _get(d, "random") else "") + (" + " if _get(d, "random") and not _get(d, "differentiable", default=True) else "")
                 + ("BPDA" if not _get(d, "differentiable", default=True) else "") or "gradients", TH.plain(str(_get(d, "description", default="")))]
                for n, d in defs.items()]  # fmt: skip
        out.append(_label_table("defenses", "Defenses", ["defense", "random", "differentiable", "adaptive attack", "description"], rows))  # fmt: skip
    return out, devs


def _threats(run: RunData) -> tuple[list[str], list[Table]]:
    """The run's threat models, rendered from each attack's structured threat (see :mod:`.threats`).

    The summary lines are recomputed from the records, not copied from the manifest, so a
    manifest written by an older version cannot make the report claim a threat the run lacks.
    """
    m = run.manifest
    lines = TH.summary_lines(run.records, m)
    by_attack: dict[str, list[CellResult]] = defaultdict(list)
    for r in run.records:
        if r.config.attack != "none":
            by_attack[r.config.attack].append(r)
    fams = C.families(run.records)
    order = C.sort_attacks((C.AttackKey(a) for a in by_attack), fams)
    defs = _get(m, "defenses", default={})
    rows = []
    for key in order:
        rs = by_attack[key.attack]
        threat = TH.threat_of(key.attack, m)
        fam = rs[0].kind
        sides = [TH.SIDE_TEXT.get(s, s) for s in sorted({r.config.target for r in rs}, key=lambda s: list(TH.SIDE_TEXT).index(s) if s in TH.SIDE_TEXT else 9)]
        text = TH.plain(threat.render() if threat is not None
                        else (TH.recorded_text(rs) or str(_get(m, "attacks", key.attack, "threat", default="–"))))  # fmt: skip
        rows.append([key.attack, fam.name, ", ".join(sides), TH.knowledge(rs, threat, defs),
                     TH.budget_cell(rs, threat, fam, _get(m, "attacks", key.attack, "defaults", default={})), text])  # fmt: skip
    tables = []
    if rows:
        caption = ("Who is attacked, what the attacker knows, and the budget, for every attack in this run. "
                   "eps and step are in /255 pixel units; images are in [0,1]; area is a fraction of the image.")
        if any(r.config.target == "both" for r in run.records):
            caption += " " + TH.BOTH_NOTE
        tables.append(_label_table("threats", "Attacks and their threat models", ["attack", "family", "attacked side", "attacker knows",
                                   "budget", "threat model"], rows, caption=caption))  # fmt: skip
    return lines, tables


MAX_RANKED_PAGES = 40  # a grid larger than this names the rows it leaves out

_FIG_TEXT: dict[str, tuple[str, str]] = {
    "eps": ("Robustness curves: mAP against the attack budget",
            "One panel per attack run at several budgets; one line per model as evaluated (defended rows carry the "
            "attacker's mode). eps 0 is the clean cell. Lines should fall as eps grows; a line that rises is a failed "
            "attack or gradient masking (see the sanity checks). Lines differ by colour, marker and line style."),
    "area": ("Occlusion: mAP against the occluded area",
             "One panel per occlusion run at several sizes; area 0 is the clean cell. A flatter line means the model "
             "copes better with missing parts of the person."),
    "heatmap": ("Relative harm of each attack",
                "Each cell is the share of the row's clean mAP that the column's attack removes, at the attack's headline "
                "budget (see the tables): 0 = no effect, 100 = retrieval destroyed; darker = more harm. '+n' means "
                "the attack raised mAP by n%. '–' = not run."),
    "fmap": ("Input occlusion vs feature-map perturbations (ETNDNet Fig. 6a)",
             "For each undefended model: Rank-1 (hatched) and mAP (solid) on clean queries, under each input "
             "occlusion, and under each feature-map perturbation (erasing, transforming, noising the backbone's map "
             "at test time), left to right, each at its headline budget; the value is written on each bar. The dotted "
             "line is the clean mAP. ETNDNet reports the feature-map perturbations as harsher than input occlusion on "
             "its baseline."),
    "aos": ("Occlusion sensitivity (AOS sliding window)",
            "Top row: the sample query images. Each further row: one cell's occlusion-sensitivity maps laid over the same "
            "images (brighter = occluding that place harms the model more; dashed and solid contours enclose the top 25% "
            "and top 5%). Every map of the run, on every page, shares one colour scale."),
    "ranked": ("Ranked lists, clean vs attacked (JAD Fig. 1)",
               "Each row: a query (left, black border) and its 10 nearest gallery images, rank 1 first. Row (a) is "
               "the clean query; the next rows are the same query under each attack at its headline budget. Green solid "
               "border with a check mark = same identity as the query; red dashed border with a cross = another identity."),
    "perturbation": ("Adversarial perturbations, amplified",
                     "One row per model as evaluated: its clean sample query, then for each L-inf input attack (every "
                     "budget run) the perturbation x' - x of that query, amplified by the factor k written above it and "
                     "centred on mid-grey (grey = unchanged). 'max' is the largest pixel change measured over every "
                     "stored sample of the cell; it must not exceed eps (a panel that does is marked in red)."),
}


def _pages(title: str, i: int, n: int) -> str:
    return f"{title} (part {i} of {n})" if n > 1 else title


def _figures(run: RunData) -> list[FigureItem]:
    recs, man, arts = run.records, run.manifest, run.artifacts
    items = []
    gs = C.grids(recs, man)
    scope = ""
    if len(gs) > 1:  # the plots draw the scope with most cells
        g = max(gs, key=lambda g: len(g.records))
        scope = f" Shown: {g.scope.dataset} with the '{g.scope.ap_variant}' AP variant, the largest of {len(gs)} scopes in this run."
    rk = any(C.reranked_view(r) is not None for r in recs)
    rk_lines = " '+ RK' lines are the same cells after re-ranking, beside the plain ones." if rk else ""
    if _has_sweep(run, "eps"):
        title, cap = _FIG_TEXT["eps"]
        items.append(FigureItem("eps", title, cap + (rk_lines if _rk_sweeps(run, "eps") else ""), lambda: P.plot_eps_curves(recs, man)))
    if _has_sweep(run, "area"):
        title, cap = _FIG_TEXT["area"]
        items.append(FigureItem("area", title, cap + (rk_lines if _rk_sweeps(run, "area") else ""), lambda: P.plot_area_curves(recs, man)))
    title, cap = _FIG_TEXT["heatmap"]
    items.append(FigureItem("heatmap", title, cap + (" '+ RK' rows: the same cells after re-ranking, measured against "
                                                      "the re-ranked clean cell." if rk else ""),
                            lambda: P.plot_drop_heatmap(recs, man)))  # fmt: skip
    fpages = P.paginate(P.feature_map_rows(recs, man), P.FMAP_PANELS)
    for i, page in enumerate(fpages or [None], 1):
        title, cap = _FIG_TEXT["fmap"]
        items.append(FigureItem(f"fmap-{i}", _pages(title, i, len(fpages)), cap,
                                lambda page=page: P.plot_feature_map_bars(recs, man, rows=page)))  # type: ignore[misc]  # fmt: skip
    if arts:
        plain = " The pictures show the plain ranking and features (before re-ranking)." if rk else ""
        apages = P.occlusion_heatmap_pages(recs, arts, man)
        for i, cells in enumerate(apages, 1):
            title, cap = _FIG_TEXT["aos"]
            items.append(FigureItem(f"aos-{i}", _pages(title, i, len(apages)), cap,
                                    lambda cells=cells: P.plot_occlusion_heatmaps(recs, arts, man, cells=cells)))  # type: ignore[misc]  # fmt: skip
        rpages = P.ranked_list_pages(recs, arts, man)
        n_of = {row: sum(1 for r, _, _ in rpages if r == row) for row, _, _ in rpages}
        seen: dict[C.RowKey, int] = {}
        for row, cells, left in rpages[:MAX_RANKED_PAGES]:
            seen[row] = seen.get(row, 0) + 1
            title, cap = _FIG_TEXT["ranked"]
            if left:
                cap += (f" Left out here: {', '.join(C.attack_text(r) + (f' ({r.config.mode})' if r.config.mode != 'none' else '') for r in left)}"
                        " (the other budgets of swept attacks; their numbers are in the sweep tables).")  # fmt: skip
            items.append(FigureItem(f"ranked-{row.label()}-{seen[row]}", _pages(f"{title}: {row.label()}", seen[row], n_of[row]),
                                    cap + plain,
                                    lambda row=row, cells=cells: P.plot_ranked_lists(recs, arts, man, row=row, cells=cells)))  # type: ignore[misc]  # fmt: skip
        if len(rpages) > MAX_RANKED_PAGES:
            dropped = rpages[MAX_RANKED_PAGES:]
            rows_left = ", ".join(dict.fromkeys(r.label() for r, _, _ in dropped))
            items[-1].caption += (f" Not shown: {sum(len(c) for _, c, _ in dropped)} more ranked lists of {rows_left} "
                                  f"(the report keeps {MAX_RANKED_PAGES} ranked-list pages).")  # fmt: skip
        ppages = P.perturbation_pages(recs, arts, man)
        for i, cells in enumerate(ppages, 1):
            title, cap = _FIG_TEXT["perturbation"]
            items.append(FigureItem(f"perturbation-{i}", _pages(title, i, len(ppages)), cap,
                                    lambda cells=cells: P.plot_perturbations(recs, arts, man, cells=cells)))  # type: ignore[misc]  # fmt: skip
    if scope:
        for it in items:
            if not it.key.startswith(("ranked", "aos", "perturbation")):
                it.caption += scope
    return items


def _has_sweep(run: RunData, param: str) -> bool:
    return any(g.sweeps(param) for g in C.grids(run.records, run.manifest))


def _rk_sweeps(run: RunData, param: str) -> bool:
    """Whether a re-ranked row has a line in the ``param`` sweep figure."""
    return any(k.rerank and len(g.sweep(k, a, param)) >= 2 for g in C.grids(run.records, run.manifest) for a in g.sweeps(param)
               for k in g.attack_rows)  # fmt: skip


def build_report(run: RunData, *, metrics: Sequence[str] = ("rank1", "mAP"), title: str | None = None) -> Report:
    """Everything a report says about ``run``; figures are drawn later, by the writer."""
    m = run.manifest
    recs = run.records
    info, devs = _info_tables(run)
    threat_lines, threat_tables = _threats(run)
    ds = _get(m, "dataset", default={})
    fp = _get(ds, "fingerprint") or (recs[0].fingerprint if recs else "")
    many = [d for d in (_get(m, "datasets", default=[]) or []) if isinstance(d, dict)]
    known_fps = {fp, *(str(d.get("fingerprint", "")) for d in many)}
    ds_text = (", ".join(f"{_text(d.get('name'))} (fingerprint {_text(d.get('fingerprint'))})" for d in many) if len(many) > 1
               else f"{_text(_get(ds, 'name') or recs[0].config.dataset)} (fingerprint {_text(fp)})")
    facts = [
        ("run", str(run.path.resolve().name)),
        ("created", _text(_get(m, "created"))),
        ("reidbench", _text(_get(m, "reidbench_version", default=__version__))),
        ("datasets" if len(many) > 1 else "dataset", ds_text),
        ("cells", f"{len(recs)} finished: " + ", ".join(f"{n} {f}" for f, n in sorted(_count(r.family for r in recs).items()))),
        ("models", ", ".join(C.model_order(recs, m))),
        ("attacks", ", ".join(sorted({r.config.attack for r in recs if r.config.attack != "none"})) or "none"),
        ("defenses", ", ".join(sorted({r.config.defense for r in recs if r.config.defense != "none"})) or "none"),
    ]
    if any(r.config.rerank for r in recs):
        n_rk = sum(C.reranked_view(r) is not None for r in recs)
        facts.append(("re-ranking", f"on for {sum(r.config.rerank for r in recs)} cells ({T.rerank_text()}); "
                      f"{n_rk} of them recorded re-ranked metrics, shown on the '+ RK' rows and lines beside the plain ones"))  # fmt: skip
    mismatched = sorted({r.fingerprint for r in recs if r.fingerprint and fp and r.fingerprint not in known_fps})
    notes = list(run.notes)
    if mismatched:
        notes.append(f"{len(mismatched)} record(s) carry a dataset fingerprint other than the manifest's: {', '.join(mismatched)}.")
    # warnings are about the plain metrics (the sanity checks read those), so the label has no "+ RK"
    warnings = sorted({(C.cell_label(r), w) for r in recs for w in r.warnings})
    return Report(
        title=title or "reidbench robustness report",
        subtitle=f"{' + '.join(_text(d.get('name')) for d in many) if len(many) > 1 else _text(_get(ds, 'name') or recs[0].config.dataset)}"
                 f" · {len(recs)} cells · {run.path.resolve().name}",
        facts=facts,
        command=str(_get(m, "command", default="")),
        info_tables=info,
        deviations=devs,
        threat_lines=threat_lines,
        threat_tables=threat_tables,
        tables=all_tables(recs, m, metrics=metrics),
        figures=_figures(run),
        warnings=warnings,
        notes=notes,
        footer=f"reidbench {_get(m, 'reidbench_version', default=__version__)} · {run.path.resolve().name} · dataset {str(fp)[:16]}",
    )


def _count(xs: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for x in xs:
        out[x] += 1
    return dict(out)
