"""How the reports arrange result records: rows, columns, clean references and sweeps.

A *row* is what a paper's table has as a row: a model, with its defense (and whether the attack
was oblivious or adaptive to it), with or without re-ranking. A *column* is an attack with
everything that changes it except its sweep budget (``eps`` or ``area``). The clean cell of a
defended model is shared by its oblivious and its adaptive row, as in JAD's Table 5.

Records are split into *scopes* (dataset, AP variant): numbers from different datasets or AP
definitions never share a table.

Re-ranking: a cell run with ``--rerank`` holds its plain metrics in the usual fields and its
k-reciprocal re-ranked ones in ``extra`` (``rr_rank1``, ``rr_mAP``, ``rr_mINP``). A grid shows
such a cell twice: on the plain row (``baseline``) with the plain metrics, and on the ``+ RK``
row (``baseline + RK``) with the re-ranked ones (:func:`reranked_view`), so every table and
curve puts the two side by side. A ``+ RK`` row never shows plain numbers.

Everything here is a pure function of the records (and of the manifest, for the attacks' default
budgets); plots and tables share it, so a row is called the same everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from reidbench.attack_types import FAMILIES, Family
from reidbench.eval.results import CellResult

MODE_ORDER = {"none": 0, "oblivious": 1, "adaptive": 2}
_SWEPT = ("eps", "area")
_COLUMN_PARAMS = ("eps", "area", "step", "steps")
EPS_REFERENCE = 5.0  # the protocol's default budget (/255), used to break ties between headlines
#: metric -> the ``CellResult.extra`` key of its re-ranked value (recorded with ``--rerank``)
RERANKED = {"rank1": "rr_rank1", "mAP": "rr_mAP", "mINP": "rr_mINP"}
#: ``extra`` key that marks a record as the re-ranked view of a cell (never written to disk)
VIEW_KEY = "report_view"


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def is_reranked(r: CellResult) -> bool:
    """Whether ``r`` is the re-ranked view of a cell (its metrics are the re-ranked ones)."""
    return r.extra.get(VIEW_KEY) == "reranked"


def reranked_view(r: CellResult) -> CellResult | None:
    """The cell with its re-ranked metrics in place of the plain ones, or None when the cell was
    not re-ranked or its record carries no re-ranked Rank-1 and mAP.

    Only Rank-1, mAP and mINP are re-ranked; Rank-5/10 and the worst draw become missing.
    """
    if not r.config.rerank or is_reranked(r) or not all(_finite(r.extra.get(RERANKED[m])) for m in ("rank1", "mAP")):
        return None
    x = r.extra
    nan = float("nan")
    return dataclasses.replace(r, rank1=float(x["rr_rank1"]), mAP=float(x["rr_mAP"]),
                               mINP=float(x["rr_mINP"]) if _finite(x.get("rr_mINP")) else nan, rank5=nan, rank10=nan,
                               mAP_worst=None, rank1_worst=None, mAP_std=None, warnings=(),
                               extra={**x, VIEW_KEY: "reranked"})  # fmt: skip


def with_reranked(records: Iterable[CellResult]) -> list[CellResult]:
    """Every record, each followed by its re-ranked view when it has one."""
    out: list[CellResult] = []
    for r in records:
        out.append(r)
        if (v := reranked_view(r)) is not None:
            out.append(v)
    return out


def rerank_missing(records: Iterable[CellResult]) -> list[CellResult]:
    """Cells run with re-ranking whose records carry no re-ranked metrics (shown plain)."""
    return [r for r in records if r.config.rerank and not is_reranked(r) and reranked_view(r) is None]


@dataclass(frozen=True, order=True)
class Scope:
    """The numbers in one table share a dataset and an AP definition."""

    dataset: str
    ap_variant: str


@dataclass(frozen=True)
class RowKey:
    """A model as evaluated: defense, oblivious/adaptive, re-ranking, distance and seed.

    ``rerank`` says the row's numbers are re-ranked (see :func:`reranked_view`)."""

    model: str
    defense: str = "none"
    mode: str = "none"
    rerank: bool = False
    distance: str = "cosine"
    seed: int = 0

    def label(self, *, distance: bool = False, seed: bool = False, clean: bool = False) -> str:
        """``baseline``, ``baseline + RK``, ``jad + cs (adaptive)``; distance/seed when they vary.

        ``clean``: the row of a defended model's clean cell reads ``jad + cs (clean)``."""
        s = self.model
        if self.defense != "none":
            s += f" + {self.defense}"
            if self.mode != "none":
                s += f" ({self.mode})"
            elif clean:
                s += " (clean)"
        if self.rerank:
            s += " + RK"
        if distance:
            s += f" [{self.distance}]"
        if seed:
            s += f" seed {self.seed}"
        return s

    @property
    def clean_key(self) -> RowKey:
        return RowKey(self.model, self.defense, "none", self.rerank, self.distance, self.seed)


@dataclass(frozen=True)
class AttackKey:
    """An attack with everything but its swept budget: the identity of a column."""

    attack: str
    target: str = "none"
    surrogate: str = ""
    step: float | None = None
    steps: int | None = None
    rest: str = "{}"  # the other params, as sorted JSON

    @property
    def is_clean(self) -> bool:
        return self.attack == "none"


def scope_of(r: CellResult) -> Scope:
    return Scope(r.config.dataset, r.config.ap_variant)


def row_of(r: CellResult) -> RowKey:
    """The row of a record; ``rerank`` is set for the re-ranked view of a cell only."""
    c = r.config
    mode = c.mode if c.defense != "none" and c.attack != "none" else "none"
    return RowKey(c.model, c.defense, mode, is_reranked(r), c.distance, c.seed)


def attack_of(r: CellResult) -> AttackKey:
    c = r.config
    if c.attack == "none":
        return AttackKey("none")
    try:
        params = json.loads(c.params) if c.params else {}
    except json.JSONDecodeError:
        params = {"params": c.params}
    rest = {k: v for k, v in params.items() if k not in _COLUMN_PARAMS} if isinstance(params, dict) else {}
    return AttackKey(c.attack, c.target, c.surrogate or "", c.step, c.steps, json.dumps(rest, sort_keys=True))


def by_scope(records: Iterable[CellResult]) -> dict[Scope, list[CellResult]]:
    out: dict[Scope, list[CellResult]] = defaultdict(list)
    for r in records:
        out[scope_of(r)].append(r)
    return dict(sorted(out.items()))


def families(records: Iterable[CellResult]) -> dict[str, Family]:
    """Attack name -> family (the first one recorded)."""
    out: dict[str, Family] = {}
    for r in records:
        out.setdefault(r.config.attack, Family.CLEAN if r.config.attack == "none" else r.kind)
    return out


def model_order(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> list[str]:
    """Models in the manifest's order, then any others alphabetically."""
    listed = list((manifest or {}).get("models") or {}) if isinstance((manifest or {}).get("models"), dict) else []
    present = {r.config.model for r in records}
    return [m for m in listed if m in present] + sorted(present - set(listed))


def sort_rows(rows: Iterable[RowKey], order: Sequence[str]) -> list[RowKey]:
    pos = {m: i for i, m in enumerate(order)}
    return sorted(set(rows), key=lambda k: (pos.get(k.model, len(pos)), k.model, k.defense != "none", k.defense,
                                            MODE_ORDER.get(k.mode, 9), k.distance, k.seed, k.rerank))  # fmt: skip


def sort_attacks(keys: Iterable[AttackKey], fams: dict[str, Family]) -> list[AttackKey]:
    def key(a: AttackKey) -> tuple[Any, ...]:
        fam = fams.get(a.attack)
        return (fam.order if fam is not None else len(FAMILIES) + 1, a.attack, a.target != "query", a.target,
                a.surrogate, a.steps or 0, a.step or 0, a.rest)  # fmt: skip

    return sorted(set(keys), key=key)


def row_labels(rows: Sequence[RowKey]) -> dict[RowKey, str]:
    """Labels that tell the rows apart (distance and seed only shown when they vary)."""
    show_d = len({k.distance for k in rows}) > 1
    show_s = len({k.seed for k in rows}) > 1
    return {k: k.label(distance=show_d, seed=show_s) for k in rows}


def attack_labels(keys: Sequence[AttackKey]) -> dict[AttackKey, str]:
    """Column labels: the attack name, plus side, surrogate and whatever else differs between its columns."""
    by_name: dict[str, list[AttackKey]] = defaultdict(list)
    for k in keys:
        by_name[k.attack].append(k)
    out: dict[AttackKey, str] = {}
    for name, ks in by_name.items():
        vary_steps = len({k.steps for k in ks}) > 1
        vary_step = len({k.step for k in ks}) > 1
        rests = [json.loads(k.rest) for k in ks]
        vary_rest = sorted({p for r in rests for p in r if len({json.dumps(x.get(p), sort_keys=True) for x in rests}) > 1})
        for k, rest in zip(ks, rests, strict=True):
            if k.is_clean:
                out[k] = "clean"
                continue
            s = name
            if k.target not in ("query", "none", ""):
                s += f" [{k.target}]"
            if k.surrogate:
                s += f" from {k.surrogate}"
            if vary_steps and k.steps is not None:
                s += f" steps={k.steps}"
            if vary_step and k.step is not None:
                s += f" step={k.step:g}"
            for p in vary_rest:
                s += f" {p}={rest.get(p)}"
            out[k] = s
    return out


def _default_budget(manifest: dict[str, Any] | None, attack: str, param: str) -> float | None:
    try:
        v = (manifest or {})["attacks"][attack]["defaults"][param]
        return float(v) if v is not None else None
    except (KeyError, TypeError, ValueError):
        return None


def headline(values: Sequence[float | None], default: float | None, reference: float | None) -> float | None:
    """The budget shown in the headline tables: the attack's default if it was run, else the most
    common value, ties broken towards ``reference`` (eps 5) or the median."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    if default is not None and any(abs(v - default) < 1e-9 for v in present):
        return next(v for v in present if abs(v - default) < 1e-9)
    counts = Counter(present)
    uniq = sorted(counts)
    ref = reference if reference is not None else uniq[(len(uniq) - 1) // 2]
    return sorted(uniq, key=lambda v: (-counts[v], abs(v - ref), v))[0]


@dataclass
class Grid:
    """The records of one scope, indexed by (row, attack, eps, area)."""

    scope: Scope
    records: list[CellResult]
    cells: dict[tuple[RowKey, AttackKey, float | None, float | None], CellResult]
    rows: list[RowKey]
    attacks: list[AttackKey]
    family: dict[str, Family]
    headline_eps: dict[AttackKey, float | None]
    headline_area: dict[AttackKey, float | None]

    def clean(self, row: RowKey) -> CellResult | None:
        """The clean cell for a row: same model, defense, re-ranking and distance (seed if possible)."""
        key = row.clean_key
        hit = self.cells.get((key, AttackKey("none"), None, None))
        if hit is not None:
            return hit
        for (k, a, _, _), r in self.cells.items():
            if a.is_clean and (k.model, k.defense, k.rerank, k.distance) == (key.model, key.defense, key.rerank, key.distance):
                return r
        return None

    def at(self, row: RowKey, attack: AttackKey, eps: float | None = None, area: float | None = None) -> CellResult | None:
        if attack.is_clean:
            return self.clean(row)
        return self.cells.get((row, attack, eps, area))

    def headline_cell(self, row: RowKey, attack: AttackKey) -> CellResult | None:
        """The cell shown in the pivot: the attack at its headline eps/area."""
        return self.at(row, attack, self.headline_eps.get(attack), self.headline_area.get(attack))

    def sweep_values(self, attack: AttackKey, param: str) -> list[float]:
        vals = {(eps if param == "eps" else area) for (_, a, eps, area) in self.cells if a == attack}
        return sorted(v for v in vals if v is not None)

    def sweeps(self, param: str) -> list[AttackKey]:
        """Attacks run at two or more values of ``param`` (``eps`` or ``area``)."""
        return [a for a in self.attacks if not a.is_clean and len(self.sweep_values(a, param)) >= 2]

    def sweep(self, row: RowKey, attack: AttackKey, param: str) -> list[tuple[float, CellResult]]:
        """``(value, cell)`` along ``param`` for one row; the other budget held at its headline."""
        out = []
        for (k, a, eps, area), r in self.cells.items():
            if k != row or a != attack:
                continue
            if param == "eps" and eps is not None and area == self.headline_area.get(attack):
                out.append((eps, r))
            elif param == "area" and area is not None and eps == self.headline_eps.get(attack):
                out.append((area, r))
        return sorted(out, key=lambda t: t[0])

    @property
    def attack_rows(self) -> list[RowKey]:
        """Rows as shown: a defended clean-only row is kept only if it has no attacked sibling."""
        attacked = {(k.model, k.defense, k.rerank, k.distance, k.seed) for k in self.rows if k.mode != "none"}
        return [k for k in self.rows if k.mode != "none" or k.defense == "none"
                or (k.model, k.defense, k.rerank, k.distance, k.seed) not in attacked]  # fmt: skip


def build_grid(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> Grid:
    """Index the records of one scope (call :func:`by_scope` first when there are several).

    A re-ranked cell is indexed twice: plain on its row, re-ranked on the row's ``+ RK`` twin.
    Where a run holds the same cell with and without re-ranking, the plain row keeps the cell
    that was run without it.
    """
    if not records:
        raise ValueError("build_grid needs at least one record")
    records = with_reranked(r for r in records if not is_reranked(r))
    cells: dict[tuple[RowKey, AttackKey, float | None, float | None], CellResult] = {}
    for r in records:
        a = attack_of(r)
        eps = None if a.is_clean else r.config.eps
        area = None if a.is_clean else r.config.area
        key = (row_of(r), a, eps, area)
        if key in cells and not cells[key].config.rerank and r.config.rerank and not is_reranked(r):
            continue
        cells[key] = r
    fams = families(records)
    attacks = sort_attacks((k[1] for k in cells), fams)
    rows = sort_rows((k[0] for k in cells), model_order(records, manifest))
    h_eps: dict[AttackKey, float | None] = {}
    h_area: dict[AttackKey, float | None] = {}
    for a in attacks:
        ks = [k for k in cells if k[1] == a]
        h_eps[a] = headline([k[2] for k in ks], _default_budget(manifest, a.attack, "eps"), EPS_REFERENCE)
        h_area[a] = headline([k[3] for k in ks if k[2] == h_eps[a]], _default_budget(manifest, a.attack, "area"), None)
    return Grid(scope_of(records[0]), list(records), cells, rows, attacks, fams, h_eps, h_area)


def grids(records: Sequence[CellResult], manifest: dict[str, Any] | None = None) -> list[Grid]:
    """One :class:`Grid` per scope (dataset, AP variant)."""
    return [build_grid(rs, manifest) for rs in by_scope(records).values()]


def attack_text(r: CellResult) -> str:
    """``clean``, ``mifgsm eps=5``, ``erasing area=0.2``, ``mifgsm eps=5 from etndnet [both]``."""
    return "clean" if r.config.attack == "none" else r.config.attack_text()


def cell_label(r: CellResult) -> str:
    """A cell as the report names it: ``jad + cs (adaptive) / mifgsm eps=5``; a defended model's
    clean cell is ``jad + cs (clean)``, an undefended one ``baseline / clean``."""
    row = row_of(r)
    if r.config.attack == "none" and row.defense != "none":
        return row.label(clean=True)
    return f"{row.label()} / {attack_text(r)}"


def budget_text(r: CellResult) -> str:
    """``eps=5/255, step=1, 15 steps`` or ``area=0.3``; empty for clean cells."""
    c = r.config
    parts = []
    if c.eps is not None:
        parts.append(f"eps={c.eps:g}/255")
    if c.step is not None:
        parts.append(f"step={c.step:g}")
    if c.steps is not None:
        parts.append(f"{c.steps} steps")
    if c.area is not None:
        parts.append(f"area={c.area:g}")
    return ", ".join(parts)
