"""Tables of a run, as papers print them, and their markdown, LaTeX (booktabs) and CSV exports.

Every builder is a pure function of the records (and of the manifest, for the papers' numbers and
the attacks' default budgets) and returns :class:`Table` objects, one per scope (dataset, AP
variant) that has data for it; an empty list when the run has none. A table keeps its numbers as
floats: the exports format them (one decimal for people, full precision in CSV).

Layouts:

* :func:`pivot_tables` -- model x attack, cells ``R1/mAP`` (optionally ``R1/mAP/mINP``) as in the
  JAD (Tables 4, 5, 7) and ETNDNet papers, each attack at its headline budget.
* :func:`drop_tables` -- the change from the row's clean cell, in pp and in % of the clean value.
* :func:`defense_tables` -- oblivious and adaptive attacks on each defended model side by side.
* :func:`sweep_tables` -- every point of the eps and area sweeps (the numbers behind the curves).
* :func:`paper_tables` -- the numbers the model cards quote from the papers, beside ours.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from reidbench.attack_types import Family
from reidbench.eval.results import CellResult
from reidbench.reports import cells as C
from reidbench.reports.markup import slug
from reidbench.reports.table_model import (  # noqa: F401  (Column, Table and the names are part of this module's API)
    AP_TEXT,
    DASH,
    METRIC_LONG,
    METRIC_NAMES,
    Cell,
    Column,
    Table,
    Value,
)
from reidbench.reports.threats import BOTH_NOTE

# -------------------------------------------------------------------------------------------------
# Builders
# -------------------------------------------------------------------------------------------------


def _values(r: CellResult | None, metrics: Sequence[str]) -> tuple[Value, ...] | None:
    if r is None:
        return None
    return tuple(_metric(r, m) for m in metrics)


def _metric(r: CellResult, m: str) -> float | None:
    v = getattr(r, m, None)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def _scope_notes(g: C.Grid, rows: Sequence[C.RowKey] = ()) -> tuple[str, ...]:
    notes = [f"Dataset: {g.scope.dataset}."]
    notes.append(AP_TEXT.get(g.scope.ap_variant, f"AP: '{g.scope.ap_variant}' variant") + ".")
    notes += rerank_notes(g.records)
    dists = sorted({r.config.distance for r in g.records})
    notes.append(f"Distance: {', '.join(dists)}.")
    return tuple(notes)


def rerank_text() -> str:
    """``k-reciprocal re-ranking (k1=20, k2=6, lambda=0.3)``, with the parameters the harness uses."""
    try:
        import inspect

        from reidbench.eval.rerank import re_ranking

        ps = inspect.signature(re_ranking).parameters
        k1, k2, lam = (ps[n].default for n in ("k1", "k2", "lambda_value"))
        return f"k-reciprocal re-ranking (k1={k1}, k2={k2}, lambda={lam})"
    except (ImportError, KeyError, ValueError, TypeError):
        return "k-reciprocal re-ranking"


def rerank_notes(records: Sequence[CellResult]) -> list[str]:
    """What the rows say about re-ranking: off, or which rows hold the re-ranked metrics."""
    notes = []
    if any(C.is_reranked(r) for r in records):
        notes.append(f"Re-ranking: rows marked '+ RK' hold the re-ranked metrics of the same cells as the row without "
                     f"'+ RK', which holds their plain metrics ({rerank_text()}; Rank-5/10 and worst draws are not re-ranked: '–').")  # fmt: skip
    else:
        notes.append("Re-ranking: off.")
    if missing := C.rerank_missing(records):
        notes.append(f"{len(missing)} cell(s) were run with re-ranking but their records carry no re-ranked metrics "
                     "(x_rr_* in results.csv); their plain metrics are shown, on rows without '+ RK'.")  # fmt: skip
    return notes


def _budget_note(g: C.Grid, attacks: Sequence[C.AttackKey], labels: dict[C.AttackKey, str]) -> str:
    parts = []
    for a in attacks:
        if a.is_clean:
            continue
        rep = next((r for k, r in g.cells.items() if k[1] == a and k[2] == g.headline_eps[a] and k[3] == g.headline_area[a]), None)
        if rep is not None and C.budget_text(rep):
            parts.append(f"{labels[a]}: {C.budget_text(rep)}")
    return ("Budgets: " + "; ".join(parts) + ".") if parts else ""


def _suffix(g: C.Grid, many: bool) -> str:
    return f" ({g.scope.dataset}, AP {g.scope.ap_variant})" if many else ""


def pivot_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None, *,
                 metrics: Sequence[str] = ("rank1", "mAP")) -> list[Table]:  # fmt: skip
    """Model x attack, each cell ``R1/mAP`` (or the given metrics) at the attack's headline budget."""
    out = []
    gs = C.grids(records, manifest)
    for g in gs:
        rows = g.attack_rows
        rlab = C.row_labels(rows)
        alab = C.attack_labels(g.attacks)
        parts = tuple(METRIC_NAMES[m] for m in metrics)
        cols = (Column("Model", label=True), *(Column(alab[a], parts) for a in g.attacks))
        body = tuple((rlab[k], *(_values(g.headline_cell(k, a), metrics) for a in g.attacks)) for k in rows)
        notes = list(_scope_notes(g, rows))
        if (b := _budget_note(g, g.attacks, alab)):
            notes.append(b)
        if any(r.draws > 1 for r in g.records):
            notes.append("Randomised defenses: the mean over draws; worst draws are in the defense table.")
        if any(a.target == "both" for a in g.attacks):
            notes.append(BOTH_NOTE)
        span = "/".join(METRIC_LONG[m] for m in metrics) + " (%)"
        out.append(Table("pivot" + _key_suffix(g, len(gs)), "Retrieval under attack" + _suffix(g, len(gs) > 1), cols, body,
                         caption="Each cell is the model's " + "/".join(METRIC_LONG[m] for m in metrics)
                         + " in percent on the query set under that column's attack; 'clean' is no attack. Lower under attack = more harm.",
                         notes=tuple(notes), span=span, scope=g.scope))  # fmt: skip
    return out


def _key_suffix(g: C.Grid, n: int) -> str:
    return f"-{slug(g.scope.dataset)}-{g.scope.ap_variant}" if n > 1 else ""


def drop(r: CellResult, clean: CellResult | None, metric: str = "mAP") -> tuple[Value, Value]:
    """``(attacked - clean in pp, the same in % of clean)``; None where there is no clean cell."""
    a, c = _metric(r, metric), (_metric(clean, metric) if clean is not None else None)
    if a is None or c is None:
        return (None, None)
    d = a - c
    return (round(d, 6), round(100.0 * d / c, 6) if c != 0 else None)


def drop_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None, *, metric: str = "mAP") -> list[Table]:
    """The change of ``metric`` from each row's clean cell: pp and relative %, negative = worse."""
    out = []
    gs = C.grids(records, manifest)
    for g in gs:
        attacks = [a for a in g.attacks if not a.is_clean]
        rows = [k for k in g.attack_rows if g.clean(k) is not None and any(g.headline_cell(k, a) for a in attacks)]
        if not attacks or not rows:
            continue
        rlab, alab = C.row_labels(rows), C.attack_labels(g.attacks)
        cols = (Column("Model", label=True), Column(f"clean {METRIC_NAMES[metric]}"),
                *(Column(alab[a], ("pp", "%"), template="{} ({}%)", spec="+.1f") for a in attacks))  # fmt: skip
        body = []
        for k in rows:
            clean = g.clean(k)
            vals: list[Cell] = [rlab[k], _metric(clean, metric) if clean else None]
            for a in attacks:
                r = g.headline_cell(k, a)
                vals.append(drop(r, clean, metric) if r is not None else None)
            body.append(tuple(vals))
        name = METRIC_LONG[metric]
        notes = list(_scope_notes(g))
        if (b := _budget_note(g, attacks, alab)):
            notes.append(b)
        notes.append("A defended row is compared with the same defended model's clean cell.")
        if any(a.target == "both" for a in attacks):
            notes.append(BOTH_NOTE)
        out.append(Table("drop" + _key_suffix(g, len(gs)), f"Change of {name} from clean" + _suffix(g, len(gs) > 1),
                         cols, tuple(body),
                         caption=f"Each cell is attacked minus clean {name}, in percentage points, and in brackets the same "
                         f"change as a percentage of the clean {name}. -100% means the attack removed all retrieval.",
                         notes=tuple(notes), span=f"Change of {name}: pp (relative %)", scope=g.scope))  # fmt: skip
    return out


def defense_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None,
                   *, metrics: Sequence[str] = ("rank1", "mAP")) -> list[Table]:  # fmt: skip
    """Oblivious and adaptive attacks on every defended model, side by side, with the gap."""
    out = []
    gs = C.grids(records, manifest)
    defs = (manifest or {}).get("defenses") if isinstance((manifest or {}).get("defenses"), dict) else {}
    for g in gs:
        groups: dict[tuple[C.RowKey, C.AttackKey], dict[str, CellResult]] = {}
        for (k, a, eps, area), r in g.cells.items():
            if k.defense == "none" or a.is_clean or k.mode not in ("oblivious", "adaptive"):
                continue
            if eps != g.headline_eps.get(a) or area != g.headline_area.get(a):
                continue
            groups.setdefault((k.clean_key, a), {})[k.mode] = r
        # attacks without gradients (occlusion, feature maps) have no adaptive variant: they are in the pivot
        groups = {key: d for key, d in groups.items() if "adaptive" in d or g.family.get(key[1].attack, Family.CLEAN).optimised}
        if not groups:
            continue
        base_rows = C.sort_rows({k for k, _ in groups}, C.model_order(g.records, manifest))
        rlab = C.row_labels(base_rows)
        alab = C.attack_labels(g.attacks)
        parts = tuple(METRIC_NAMES[m] for m in metrics)
        random_any = any(r.draws > 1 for d in groups.values() for r in d.values())
        cols = [Column("Model + defense", label=True), Column("Attack", label=True), Column("clean", parts),
                Column("oblivious", parts), Column("adaptive", parts), Column("gap mAP (pp)", spec="+.1f")]  # fmt: skip
        if random_any:
            cols.append(Column("adaptive, worst draw", ("mAP", "draws"), template="{} (of {})", spec=(".1f", ".0f")))
        body = []
        for k in base_rows:
            for a in g.attacks:
                d = groups.get((k, a))
                if d is None:
                    continue
                ob, ad = d.get("oblivious"), d.get("adaptive")
                gap = (ob.mAP - ad.mAP) if ob is not None and ad is not None else None
                row: list[Cell] = [rlab[k], alab[a], _values(g.clean(k), metrics), _values(ob, metrics), _values(ad, metrics),
                                   round(gap, 6) if gap is not None else None]  # fmt: skip
                if random_any:
                    worst = ad if ad is not None and ad.draws > 1 and ad.mAP_worst is not None else None
                    row.append((worst.mAP_worst, float(worst.draws)) if worst is not None else None)
                body.append(tuple(row))
        how = []
        for dname in sorted({k.defense for k, _ in groups}):
            for part in dname.split("+"):
                info = defs.get(part) if isinstance(defs, dict) else None
                if isinstance(info, dict):
                    tricks = (["EOT over its random draws"] if info.get("random") else []) + (
                        [] if info.get("differentiable", True) else ["BPDA (identity backward)"])
                    how.append(f"{part}: adaptive attack uses {' and '.join(tricks) or 'plain gradients through it'}")
        notes = [*_scope_notes(g)]
        if how:
            notes.append("; ".join(how) + ".")
        if random_any:
            notes.append("Randomised defenses: cells are the mean over the draws; the last column is the worst draw's mAP (of n draws).")
        out.append(Table("defense" + _key_suffix(g, len(gs)), "Defenses: oblivious vs adaptive attacker" + _suffix(g, len(gs) > 1),
                         tuple(cols), tuple(body),
                         caption="Oblivious: the attack is made on the bare model and the defense applied afterwards (what "
                         "the JAD paper reports). Adaptive: the attack goes through the defense (BPDA/EOT where needed). A large "
                         "positive gap means the protection comes from the attacker not knowing the defense: it does not "
                         "hold against an attacker who does.",
                         notes=tuple(notes), span="/".join(METRIC_LONG[m] for m in metrics) + " (%)", scope=g.scope))  # fmt: skip
    return out


def sweep_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None, *, param: str = "eps",
                 metrics: Sequence[str] = ("rank1", "mAP")) -> list[Table]:  # fmt: skip
    """Every point of the ``eps`` (or ``area``) sweeps; the clean cell is the 0 column."""
    out = []
    gs = C.grids(records, manifest)
    for g in gs:
        attacks = g.sweeps(param)
        if not attacks:
            continue
        values = sorted({v for a in attacks for v in g.sweep_values(a, param)})
        alab = C.attack_labels(g.attacks)
        rows = [k for k in g.attack_rows if any(len(g.sweep(k, a, param)) >= 2 for a in attacks)]
        rlab = C.row_labels(rows)
        parts = tuple(METRIC_NAMES[m] for m in metrics)
        unit = "/255" if param == "eps" else ""
        cols = (Column("Model", label=True), Column("Attack", label=True), Column("0 (clean)", parts),
                *(Column(f"{v:g}{unit}", parts) for v in values))  # fmt: skip
        body = []
        for k in rows:
            for a in attacks:
                pts = dict(g.sweep(k, a, param))
                if len(pts) < 2:
                    continue
                body.append((rlab[k], alab[a], _values(g.clean(k), metrics), *(_values(pts.get(v), metrics) for v in values)))
        what = "L-inf budget eps (/255)" if param == "eps" else "occluded area"
        notes = list(_scope_notes(g))
        held = [f"{alab[a]} at area={g.headline_area[a]:g}" for a in attacks if param == "eps" and g.headline_area.get(a) is not None]
        held += [f"{alab[a]} at eps={g.headline_eps[a]:g}" for a in attacks if param == "area" and g.headline_eps.get(a) is not None]
        if held:
            notes.append("Held fixed: " + "; ".join(held) + ".")
        out.append(Table(f"sweep-{param}" + _key_suffix(g, len(gs)), f"Sweep over the {what}" + _suffix(g, len(gs) > 1),
                         cols, tuple(body),
                         caption=f"Each column is one value of the {what}; '0 (clean)' is the row's clean cell. "
                         "Robust accuracy should not rise with a larger budget.",
                         notes=tuple(notes), span="/".join(METRIC_LONG[m] for m in metrics) + " (%)", scope=g.scope))  # fmt: skip
    return out


# -- the papers' numbers ------------------------------------------------------------------------------


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


_CLEAN_NAMES = {"", "none", "noattack", "clean", "noattacks"}


def _mentions_rerank(text: str) -> bool | None:
    """True for "+RK"/"with re-ranking", False for "no/without re-ranking", None when silent."""
    if re.search(r"\b(no|without|w/o)\s+(re-?rank|rk\b)", text, flags=re.I):
        return False
    if re.search(r"\+\s*rk\b|re-?rank", text, flags=re.I):
        return True
    return None


def _paper_model(model_field: str, card_model: str, method: str, models: Sequence[str], *context: str) -> tuple[str | None, bool]:
    """Which of our models a paper row corresponds to, and whether the row is with re-ranking
    (from the row's name, else from its note or source)."""
    raw = model_field or ""
    said = [_mentions_rerank(t) for t in (raw, *context)]
    rerank = next((x for x in said if x is not None), False)
    base = _norm(re.sub(r"\+\s*rk\b|\(ours\)|\(with rk\)|re-?rank(ing)?", "", raw, flags=re.I))
    if not base or base in (_norm(card_model), _norm(method)) or base == "ours":
        return card_model, rerank
    for m in models:
        if _norm(m) == base:
            return m, rerank
    return None, rerank


def _match_ours(g: C.Grid, model: str, attack: str, rerank: bool, defense: str | None) -> CellResult | None:
    want = _norm(attack)
    clean = want in _CLEAN_NAMES
    best: tuple[int, CellResult] | None = None
    for (k, a, eps, area), r in g.cells.items():
        if k.model != model or a.target not in ("query", "none") or a.surrogate:
            continue
        if clean != a.is_clean or (not clean and _norm(a.attack) != want):
            continue
        if not clean and (eps != g.headline_eps.get(a) or area != g.headline_area.get(a)):
            continue
        if k.rerank != rerank:
            continue  # a paper's re-ranked row is only comparable with a re-ranked cell, and vice versa
        score = 0
        if defense:
            score += 2 if k.defense == defense else 0
            score += 1 if k.mode in ("oblivious", "none") else 0
        else:
            score += 3 if k.defense == "none" else 0
        if (k.defense == "none" or (defense and k.defense == defense)) and (best is None or score > best[0]):
            best = (score, r)
    return best[1] if best is not None else None


def paper_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> list[Table]:
    """The numbers each model card quotes from its paper, labelled as the paper's, beside our cell."""
    models = (manifest or {}).get("models")
    if not isinstance(models, dict):
        return []
    out = []
    gs = C.grids(records, manifest)
    for g in gs:
        present = [m for m in C.model_order(g.records, manifest)]
        body = []
        for name in C.model_order(g.records, manifest) + [m for m in models if m not in present]:
            entry = models.get(name)
            card = entry.get("card") if isinstance(entry, dict) else None
            if not isinstance(card, dict):
                continue
            for pr in card.get("paper_results") or ():
                if not isinstance(pr, dict):
                    continue
                ours_model, rk = _paper_model(str(pr.get("model") or ""), name, str(card.get("method") or ""), present,
                                              str(pr.get("note") or ""), str(pr.get("source") or ""))  # fmt: skip
                ours = _match_ours(g, ours_model, str(pr.get("attack") or ""), rk, card.get("inference_defense")) if ours_model else None
                src = ", ".join(x for x in (_short_paper(str(card.get("paper") or "")), str(pr.get("source") or "")) if x) or "–"
                note = str(pr.get("note") or "")
                prow = str(pr.get("model") or name) + (f" ({note})" if note else "")
                ours_label = (_cell_text(ours) if ours is not None
                              else "not run (the paper re-ranks: run with --rerank)" if rk else "not run")
                body.append((name, prow, str(pr.get("dataset") or "?"), str(pr.get("attack") or "none"),
                             (_num(pr.get("rank1")), _num(pr.get("mAP"))), src,
                             (ours.rank1, ours.mAP) if ours is not None else None, ours_label))  # fmt: skip
        if not body:
            continue
        parts = ("R1", "mAP")
        cols = (Column("Card", label=True), Column("Paper's row", label=True), Column("Paper's dataset", label=True),
                Column("Attack", label=True), Column("paper R1/mAP", parts), Column("Reported in", label=True),
                Column(f"ours R1/mAP ({g.scope.dataset})", parts), Column("Our cell", label=True))  # fmt: skip
        synthetic = "synthetic" in g.scope.dataset.lower()
        caption = ("'paper' columns are copied from the model cards: the numbers the method's paper reports, on the paper's "
                   f"dataset. 'ours' are measured in this run on {g.scope.dataset}"
                   + (", a synthetic dataset: compare the direction and size of the effects, not the values." if synthetic
                      else "; differences in data, training and protocol remain."))  # fmt: skip
        out.append(Table("paper" + _key_suffix(g, len(gs)), "The papers' numbers beside ours" + _suffix(g, len(gs) > 1),
                         cols, tuple(body), caption=caption, notes=_scope_notes(g), scope=g.scope))  # fmt: skip
    return out


def _short_paper(paper: str) -> str:
    """``Luo et al., Bag of Tricks ..., CVPR-W 2019`` -> ``Luo et al.``; the full citation is on the title page."""
    head = paper.split(",")[0].strip()
    return head if len(head) <= 48 else head[:46].rstrip() + "…"


def _cell_text(r: CellResult) -> str:
    """``jad + cs (oblivious): mifgsm eps=5``: the row and the column of a cell."""
    a = r.config
    att = "clean" if a.attack == "none" else a.attack + (f" eps={a.eps:g}" if a.eps is not None else "") + (f" area={a.area:g}" if a.area is not None else "")
    return f"{C.row_of(r).label()}: {att}"


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def all_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None, *,
               metrics: Sequence[str] = ("rank1", "mAP")) -> list[Table]:  # fmt: skip
    """Every table of the report, in report order; tables without data are left out."""
    return [*reproduction_tables(records, manifest), *pivot_tables(records, manifest, metrics=metrics),
            *dataset_pair_tables(records, manifest), *drop_tables(records, manifest),
            *defense_tables(records, manifest, metrics=metrics), *sweep_tables(records, manifest, param="eps", metrics=metrics),
            *sweep_tables(records, manifest, param="area", metrics=metrics), *paper_tables(records, manifest),
            *cost_tables(records, manifest)]  # fmt: skip


def reproduction_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> list[Table]:
    """"Do the papers' findings hold here?" when the run measures at least one published claim."""
    from reidbench.reports import reproduction as R

    cells = R.from_records(records)
    t = R.reproduction_table(cells, R.infer_setting(cells, _trained_on(manifest)))
    return [t] if any(row[-1] != R.NOT_MEASURED for row in t.rows) else []


def _trained_on(manifest: dict[str, Any] | None) -> list[str]:
    models = (manifest or {}).get("models") or {}
    return [((info or {}).get("card") or {}).get("train_dataset", "") for info in models.values() if isinstance(info, dict)]


def dataset_pair_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None, *,
                        metric: str = "mAP") -> list[Table]:  # fmt: skip
    """The models' own dataset beside each other dataset of the run, attack by attack: the
    occluded twin (holistic vs occluded queries) or another domain (in-domain vs cross-domain)."""
    gs = C.grids(records, manifest)
    if len(gs) < 2:
        return []
    trained = _trained_on(manifest)
    ref = next((g for g in gs if g.scope.dataset in trained), gs[0])
    out = []
    for g in gs:
        if g is ref or g.scope.ap_variant != ref.scope.ap_variant:
            continue
        theirs, attacks_there = set(g.attack_rows), set(g.attacks)
        rows = [k for k in ref.attack_rows if k in theirs]
        attacks = [a for a in ref.attacks if a in attacks_there]
        if not rows or not attacks:
            continue
        rlab, alab = C.row_labels(rows), C.attack_labels(attacks)
        occluded = "occluded" in g.scope.dataset and "occluded" not in ref.scope.dataset
        a_name, b_name = ("holistic", "occluded") if occluded else ("in-domain", "cross-domain")
        cols = (Column("Model", label=True), *(Column(alab[a], (a_name, b_name), template="{} | {}") for a in attacks))
        def value(grid: C.Grid, k: Any, a: Any) -> Value:
            r = grid.headline_cell(k, a)
            return _metric(r, metric) if r is not None else None

        body = tuple((rlab[k], *((value(ref, k, a), value(g, k, a)) for a in attacks)) for k in rows)
        what = ("the same models on holistic queries and on occluded queries (Occluded-Duke style)" if occluded else
                f"models trained on {ref.scope.dataset} evaluated there (in-domain) and on {g.scope.dataset}, "
                "which they never saw (cross-domain), as JAD's Table 2 and the APD paper report generalisation")
        out.append(Table(f"pair-{slug(g.scope.dataset)}", f"{ref.scope.dataset} vs {g.scope.dataset}: {a_name} | {b_name}",
                         cols, body, caption=f"{METRIC_LONG[metric]} (%) of {what}; each cell is "
                         f"'{a_name} | {b_name}' under that column's attack.",
                         notes=(f"Datasets: {ref.scope.dataset} ({a_name}), {g.scope.dataset} ({b_name}).",),
                         span=f"{METRIC_LONG[metric]} (%)", scope=g.scope))  # fmt: skip
    return out


def cost_tables(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> list[Table]:
    """What each attack costs: images crafted per second (the median over its cells), so a
    feed-forward attack (mpg) reads beside the iterative ones at the same eps."""
    import statistics

    by: dict[str, list[float]] = {}
    for r in records:
        v = r.extra.get("attack_images_per_s")
        if isinstance(v, (int, float)) and v > 0:
            by.setdefault(r.config.attack, []).append(float(v))
    if len(by) < 2:
        return []
    rows = tuple((name, statistics.median(vs), float(len(vs))) for name, vs in sorted(by.items(), key=lambda kv: -statistics.median(kv[1])))
    device = str((manifest or {}).get("device", "")) or "this run's device"
    threads = (manifest or {}).get("threads")
    return [Table("cost", "Attack cost: images per second", (Column("Attack", label=True), Column("images/s", spec=".1f"),
                  Column("cells", spec=".0f")), rows,
                  caption=f"Images crafted per second by each attack (median over its cells), on {device}"
                          + (f" with {threads} thread(s)" if threads else "") + "; wall-clock on a possibly shared machine.",
                  notes=("The time covers the attack alone (crafting, or the one forward pass of a generator), "
                         "not feature extraction or evaluation.",))]  # fmt: skip
