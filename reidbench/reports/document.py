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
            devs.append((n, str(d)))
    out.append(_label_table("models", "Models", ["model", "method", "paper", "checkpoint / sha256"], mrows))
    defs = _get(m, "defenses", default={})
    if isinstance(defs, dict) and defs:
        rows = [[n, "yes" if _get(d, "random") else "no", "yes" if _get(d, "differentiable", default=True) else "no",
                 ("EOT" if _get(d, "random") else "") + (" + " if _get(d, "random") and not _get(d, "differentiable", default=True) else "")
                 + ("BPDA" if not _get(d, "differentiable", default=True) else "") or "gradients", _get(d, "description")]
                for n, d in defs.items()]  # fmt: skip
        out.append(_label_table("defenses", "Defenses", ["defense", "random", "differentiable", "adaptive attack", "description"], rows))  # fmt: skip
    return out, devs


def _knowledge(rs: Sequence[CellResult], defs: Any) -> str:
    parts = set()
    for r in rs:
        c = r.config
        if c.surrogate:
            parts.add(f"transfer from {c.surrogate} (black-box on the target)")
        elif r.family == "feature-map":
            parts.add("none: a test-time perturbation of the feature map, not an optimised attack")
        elif r.family in ("occlusion", "noise") and c.eps is None:
            parts.add("none beyond the image (occlusion)" if r.family == "occlusion" else "none (random noise)")
        else:
            parts.add("white-box on the target" + (" and the gallery identities" if r.family == "classification" else ""))
        if c.defense != "none" and c.mode == "oblivious":
            parts.add(f"oblivious to {c.defense}")
        if c.defense != "none" and c.mode == "adaptive":
            tricks = []
            for d in c.defense.split("+"):
                if _get(defs, d, "random"):
                    tricks.append("EOT")
                if _get(defs, d, "differentiable", default=True) is False:
                    tricks.append("BPDA")
            parts.add(f"adaptive through {c.defense}" + (f" ({'+'.join(sorted(set(tricks)))})" if tricks else ""))
    return "; ".join(sorted(parts))


def _threat_texts(rs: Sequence[CellResult]) -> list[str]:
    """The recorded threat texts of one attack, as one text: the union of their ``;``-clauses.

    Budgets and the defense clause are left out (the budget and knowledge columns give them), and
    ``white-box on <model>`` reads ``white-box on the target model``, so cells that differ only in
    model, budget or defense mode share one text.
    """
    clauses: list[str] = []
    for r in rs:
        for c in (r.threat or "").split(";"):
            c = c.strip()
            if not c or c.startswith(("budget ", "defense ")) or c == "none (clean)":
                continue
            c = c.replace(f"white-box on {r.config.model}", "white-box on the target model")
            if c not in clauses:
                clauses.append(c)
    return ["; ".join(clauses)] if clauses else []


def _threats(run: RunData) -> tuple[list[str], list[Table]]:
    m = run.manifest
    lines = [str(t) for t in (_get(m, "threat_models", default=[]) or []) if t]
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
        sides = sorted({r.config.target for r in rs})
        eps = sorted({r.config.eps for r in rs if r.config.eps is not None})
        area = sorted({r.config.area for r in rs if r.config.area is not None})
        steps = sorted({r.config.steps for r in rs if r.config.steps is not None})
        step = sorted({r.config.step for r in rs if r.config.step is not None})
        budget = []
        if eps:
            budget.append("eps " + ", ".join(f"{e:g}" for e in eps) + " /255 (L-inf)")
        if step:
            budget.append("step " + ", ".join(f"{s:g}" for s in step) + " /255")
        if steps:
            budget.append(", ".join(map(str, steps)) + " iterations")
        if area:
            budget.append("area " + ", ".join(f"{a:g}" for a in area))
        defaults = _get(m, "attacks", key.attack, "defaults", default={})
        if isinstance(defaults, dict) and "momentum" in defaults:
            budget.append(f"momentum {defaults['momentum']}")
        texts = _threat_texts(rs)
        rows.append([key.attack, fams.get(key.attack, ""), ", ".join(sides), _knowledge(rs, defs), "; ".join(budget) or "–",
                     " / ".join(texts) or _get(m, "attacks", key.attack, "threat", default="–")])  # fmt: skip
    tables = []
    if rows:
        tables.append(_label_table("threats", "Attacks and their threat models", ["attack", "family", "attacked side", "attacker knows",
                                   "budget", "threat model (as recorded)"], rows,
                                   caption="Who is attacked, what the attacker knows, and the budget, for every attack in this run. "
                                   "eps and step are in /255 pixel units; images are in [0,1]."))  # fmt: skip
    return lines, tables


MAX_RANKED_FIGURES = 12  # one page per model as evaluated

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
             "at test time), left to right. The dotted line is the clean mAP. ETNDNet reports the feature-map "
             "perturbations as harsher than input occlusion on its baseline."),
    "aos": ("Occlusion sensitivity (AOS sliding window)",
            "Top: sample query images. Bottom: the same images with the occlusion-sensitivity map laid over them "
            "(brighter = occluding that place harms the model more; dashed and solid contours enclose the top 25% "
            "and top 5%). The maps are on one colour scale across the figure."),
    "ranked": ("Ranked lists, clean vs attacked (JAD Fig. 1)",
               "Each row: a query (left, black border) and its 10 nearest gallery images, rank 1 first. Row (a) is "
               "the clean query; the next rows are the same query under each attack. Green solid border with a "
               "check mark = same identity as the query; red dashed border with a cross = another identity."),
    "perturbation": ("Adversarial perturbations, amplified",
                     "For each input attack: the clean query, the attacked query, and the difference x' - x "
                     "amplified by the stated factor k and centred on mid-grey (grey = unchanged). The measured "
                     "largest pixel change is printed on each row; it must not exceed eps."),
}


def _figures(run: RunData) -> list[FigureItem]:
    recs, man, arts = run.records, run.manifest, run.artifacts
    items = []
    gs = C.grids(recs, man)
    scope = ""
    if len(gs) > 1:  # the plots draw the scope with most cells
        g = max(gs, key=lambda g: len(g.records))
        scope = f" Shown: {g.scope.dataset} with the '{g.scope.ap_variant}' AP variant, the largest of {len(gs)} scopes in this run."
    if _has_sweep(run, "eps"):
        items.append(FigureItem("eps", *_FIG_TEXT["eps"], lambda: P.plot_eps_curves(recs, man)))
    if _has_sweep(run, "area"):
        items.append(FigureItem("area", *_FIG_TEXT["area"], lambda: P.plot_area_curves(recs, man)))
    items.append(FigureItem("heatmap", *_FIG_TEXT["heatmap"], lambda: P.plot_drop_heatmap(recs, man)))
    items.append(FigureItem("fmap", *_FIG_TEXT["fmap"], lambda: P.plot_feature_map_bars(recs, man)))
    if arts:
        items.append(FigureItem("aos", *_FIG_TEXT["aos"], lambda: P.plot_occlusion_heatmaps(recs, arts, man)))
        rows = P.ranked_list_rows(recs, arts, man)
        for row in rows[:MAX_RANKED_FIGURES]:
            title, cap = _FIG_TEXT["ranked"]
            items.append(FigureItem(f"ranked-{row.label()}", f"{title}: {row.label()}", cap,
                                    lambda row=row: P.plot_ranked_lists(recs, arts, man, row=row)))  # type: ignore[misc]  # fmt: skip
        if len(rows) > MAX_RANKED_FIGURES:
            left = ", ".join(r.label() for r in rows[MAX_RANKED_FIGURES:])
            items[-1].caption += f" Not shown (the report keeps {MAX_RANKED_FIGURES} ranked-list pages): {left}."
        items.append(FigureItem("perturbation", *_FIG_TEXT["perturbation"], lambda: P.plot_perturbations(recs, arts, man)))
    if scope:
        for it in items:
            if not it.key.startswith(("ranked", "aos", "perturbation")):
                it.caption += scope
    return items


def _has_sweep(run: RunData, param: str) -> bool:
    return any(g.sweeps(param) for g in C.grids(run.records, run.manifest))


def build_report(run: RunData, *, metrics: Sequence[str] = ("rank1", "mAP"), title: str | None = None) -> Report:
    """Everything a report says about ``run``; figures are drawn later, by the writer."""
    m = run.manifest
    recs = run.records
    info, devs = _info_tables(run)
    threat_lines, threat_tables = _threats(run)
    ds = _get(m, "dataset", default={})
    fp = _get(ds, "fingerprint") or (recs[0].fingerprint if recs else "")
    facts = [
        ("run", str(run.path.resolve().name)),
        ("created", _text(_get(m, "created"))),
        ("reidbench", _text(_get(m, "reidbench_version", default=__version__))),
        ("dataset", f"{_text(_get(ds, 'name') or recs[0].config.dataset)} (fingerprint {_text(fp)})"),
        ("cells", f"{len(recs)} finished: " + ", ".join(f"{n} {f}" for f, n in sorted(_count(r.family for r in recs).items()))),
        ("models", ", ".join(C.model_order(recs, m))),
        ("attacks", ", ".join(sorted({r.config.attack for r in recs if r.config.attack != "none"})) or "none"),
        ("defenses", ", ".join(sorted({r.config.defense for r in recs if r.config.defense != "none"})) or "none"),
    ]
    mismatched = sorted({r.fingerprint for r in recs if r.fingerprint and fp and r.fingerprint != fp})
    notes = list(run.notes)
    if mismatched:
        notes.append(f"{len(mismatched)} record(s) carry a dataset fingerprint other than the manifest's: {', '.join(mismatched)}.")
    warnings = sorted({(r.config.label() + (" + RK" if r.config.rerank else ""), w) for r in recs for w in r.warnings})
    return Report(
        title=title or "reidbench robustness report",
        subtitle=f"{_text(_get(ds, 'name') or recs[0].config.dataset)} · {len(recs)} cells · {run.path.resolve().name}",
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
