"""The CI regression check: compare a run's cells with a golden file, with tolerances.

``reidbench check RUN --baseline golden.json`` reads the run's result records (never re-running
anything), matches every cell of the golden file to the run's cell of the same ``cell_id`` and
judges each metric the golden file lists. Robustness numbers are "higher is better", so only a
drop can regress: a drop beyond the tolerance is a REGRESSION, a rise beyond it is shown as
``improved`` (so the golden file can be refreshed on purpose), anything else is ``ok``.

Tolerances
----------
A rule is ``SELECTOR=TOLERANCE``, the same on the command line (``--tol``) and in the golden
file's ``"tolerances"`` object (selector -> tolerance)::

    mAP=1pp                       every cell's mAP may drop by 1 percentage point
    *=2pp                         every metric ("*" stands for all five)
    rank1=2pp,5%                  2 pp or 5 % of the golden value, whichever is larger
    attack:mifgsm:mAP=2pp         cells whose attack is mifgsm
    cell:3f9c0d2ab71e4c55:mINP=3% one cell, by its cell_id

A tolerance is ``Xpp`` (absolute, in percentage points), ``Y%`` (relative to the golden value) or
both, comma-separated. With both, a number passes when its drop is within *either*: the allowed
drop is ``max(X, Y/100 * |golden|)``, like :func:`math.isclose`. pp keeps small numbers (mAP of
3 under a strong attack) from failing on noise; % scales with large ones. The limit is inclusive:
a drop of exactly the tolerance passes.

Exactly one rule applies to a (cell, metric); the winner is decided by, in order:

1. scope: ``cell:`` beats ``attack:`` beats a bare metric (all cells);
2. source: ``--tol`` beats the golden file beats :data:`DEFAULT_TOLERANCES`;
3. within the same scope and source, a named metric beats ``*``.

The winning rule replaces the others whole (a ``pp``-only rule does not inherit a ``%``). The
output names the rule that applied to each number.

Golden file
-----------
A versioned JSON document (``"format": "reidbench-golden/1"``), written with sorted keys and
indentation so that a refresh reads well in a diff. ``cells`` maps ``cell_id`` to the cell's
``label``, ``config`` (the :class:`CellConfig` fields, for readers) and ``metrics`` (percent;
``null`` where the run measured NaN). ``dataset.fingerprint`` ties it to one split; ``provenance``
records the run's manifest (versions, seed, device, command, checkpoints' sha256).
"""

from __future__ import annotations

import dataclasses
import json
import math
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from reidbench import __version__
from reidbench.errors import DataError, ParameterError
from reidbench.eval.results import (
    METRICS,
    CellResult,
    atomic_write_text,
    read_manifest,
    read_records,
)

GOLDEN_FORMAT = "reidbench-golden/1"

# How far each metric may drop (percentage points and/or % of the golden value) before `check`
# calls it a regression, when neither the golden file nor --tol says otherwise.
#
# Measured (2026-11, the embedded default's 109-cell benchmark, 2 CPU cores): the same run twice,
# 1 vs 2 threads, and torch 2.14.1 vs 2.15.0 (synthetic data regenerated under each) gave
# bitwise-identical numbers in every cell: the movement on CPU is 0.00 pp. The defaults therefore
# only need to absorb what could not be measured here (GPU kernels, other CPU vector units), which
# flips near-tied rankings of a few queries: 1 pp is just above one query of the embedded
# default's 167 (0.6 pp) and ten times smaller than the regressions this check exists to catch.
# Edit the strings here (same syntax as --tol); nothing else needs to change.
DEFAULT_TOLERANCES: dict[str, str] = {
    "rank1": "1pp",
    "rank5": "1pp",
    "rank10": "1pp",
    "mAP": "1pp",
    "mINP": "1pp",
}

Verdict = Literal["REGRESSION", "improved", "ok"]
Source = Literal["default", "golden", "cli"]

_SCOPES = ("all", "attack", "cell")  # least to most specific
_SOURCES = ("default", "golden", "cli")  # weakest to strongest
_EPS = 1e-9  # float slack, so that a drop of exactly the tolerance passes

TOLERANCE_SYNTAX = "[attack:NAME:|cell:CELL_ID:]METRIC=TOL, METRIC one of rank1, rank5, rank10, mAP, mINP or *, TOL like 1pp, 5% or 1pp,5%"


class GoldenError(DataError):
    """A golden file that is missing, malformed, of another format or of another dataset."""


class ToleranceError(ParameterError):
    """A tolerance rule that does not parse or that matches nothing."""


# ---------------------------------------------------------------------------------------------
# Tolerances
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """An allowed drop: ``pp`` percentage points and/or ``rel`` percent of the golden value."""

    pp: float | None = None
    rel: float | None = None

    def allowed(self, golden: float) -> float:
        """The allowed drop in percentage points: the larger of the two bounds."""
        bounds = [self.pp or 0.0, (self.rel or 0.0) / 100.0 * abs(golden)]
        return max(bounds)

    def __str__(self) -> str:
        parts = []
        if self.pp is not None:
            parts.append(f"{self.pp:g}pp")
        if self.rel is not None:
            parts.append(f"{self.rel:g}%")
        return ",".join(parts)


def parse_tolerance(text: str) -> Tolerance:
    """``"1pp"``, ``"5%"`` or ``"1pp,5%"`` (either order) -> :class:`Tolerance`."""
    pp: float | None = None
    rel: float | None = None
    parts = [p.strip() for p in str(text).split(",")]
    if not text or not all(parts):
        raise ToleranceError(f"tolerance {text!r} is empty; write e.g. 1pp, 5% or 1pp,5%")
    for part in parts:
        unit = "pp" if part.endswith("pp") else "%" if part.endswith("%") else None
        if unit is None:
            raise ToleranceError(f"tolerance {text!r} needs a unit: {part}pp (percentage points) or {part}% (relative to the golden value)")
        number = part[: -len(unit)].strip()
        try:
            value = float(number)
        except ValueError:
            raise ToleranceError(f"tolerance {text!r}: {number!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ToleranceError(f"tolerance {text!r}: {number} must be a finite number >= 0")
        if (pp if unit == "pp" else rel) is not None:
            raise ToleranceError(f"tolerance {text!r} gives {unit} twice")
        if unit == "pp":
            pp = value
        else:
            rel = value
    return Tolerance(pp=pp, rel=rel)


@dataclass(frozen=True)
class ToleranceRule:
    """One ``SELECTOR=TOLERANCE`` rule and where it came from."""

    scope: str  # "all", "attack" or "cell"
    name: str  # the attack name or cell id; "" for scope "all"
    metric: str  # one of METRICS, or "*"
    tolerance: Tolerance
    source: Source

    @property
    def selector(self) -> str:
        return self.metric if self.scope == "all" else f"{self.scope}:{self.name}:{self.metric}"

    def __str__(self) -> str:
        return f"{self.selector}={self.tolerance}"

    def describe(self) -> str:
        """The rule and its origin, as the output shows it: ``attack:mifgsm:mAP=2pp (golden)``."""
        return f"{self} ({self.source})"

    def matches(self, cell_id: str, attack: str, metric: str) -> bool:
        if self.metric not in ("*", metric):
            return False
        if self.scope == "cell":
            return self.name == cell_id
        if self.scope == "attack":
            return self.name == attack
        return True

    @property
    def precedence(self) -> tuple[int, int, int]:
        return (_SCOPES.index(self.scope), _SOURCES.index(self.source), int(self.metric != "*"))


def parse_selector(selector: str) -> tuple[str, str, str]:
    """``"mAP"``, ``"attack:mifgsm:mAP"``, ``"cell:<id>:*"`` -> (scope, name, metric)."""
    sel = selector.strip()
    if ":" in sel:
        scope, _, rest = sel.partition(":")
        name, _, metric = rest.rpartition(":")
        scope, name, metric = scope.strip(), name.strip(), metric.strip()
        if scope not in ("attack", "cell") or not name:
            raise ToleranceError(f"selector {selector!r} is not one of METRIC, attack:NAME:METRIC, cell:CELL_ID:METRIC")
    else:
        scope, name, metric = "all", "", sel
    if metric != "*" and metric not in METRICS:
        raise ToleranceError(f"selector {selector!r}: unknown metric {metric!r}; use one of {', '.join(METRICS)} or *")
    return scope, name, metric


def parse_rule(text: str, source: Source = "cli") -> ToleranceRule:
    """``"attack:mifgsm:mAP=2pp"`` -> :class:`ToleranceRule`."""
    selector, eq, value = text.partition("=")
    if not eq:
        raise ToleranceError(f"tolerance rule {text!r} has no '='; the syntax is {TOLERANCE_SYNTAX}")
    scope, name, metric = parse_selector(selector)
    return ToleranceRule(scope, name, metric, parse_tolerance(value.strip()), source)


def default_rules() -> list[ToleranceRule]:
    return [parse_rule(f"{sel}={tol}", "default") for sel, tol in DEFAULT_TOLERANCES.items()]


def resolve_tolerance(rules: Iterable[ToleranceRule], cell_id: str, attack: str, metric: str) -> ToleranceRule:
    """The one rule that applies to ``metric`` of a cell (see the module docstring for the order)."""
    matching = [r for r in rules if r.matches(cell_id, attack, metric)]
    if not matching:
        raise ToleranceError(f"no tolerance applies to {metric}; DEFAULT_TOLERANCES must cover every metric")
    return max(matching, key=lambda r: r.precedence)


def unmatched_reason(rule: ToleranceRule, cells: Mapping[str, str]) -> str | None:
    """Why ``rule`` can match no cell of ``cells`` (cell_id -> attack), or None if it can."""
    if rule.scope == "cell" and rule.name not in cells:
        return f"there is no cell {rule.name}"
    if rule.scope == "attack" and rule.name not in cells.values():
        return f"no cell uses attack {rule.name!r} (attacks: {', '.join(sorted(set(cells.values())))})"
    return None


# ---------------------------------------------------------------------------------------------
# The golden file
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldenCell:
    cell_id: str
    label: str
    config: dict[str, Any]
    metrics: dict[str, float | None]  # None: the run measured NaN

    @property
    def attack(self) -> str:
        return str(self.config.get("attack", "none"))


@dataclass(frozen=True)
class Golden:
    """A loaded, validated golden file."""

    path: Path
    fingerprint: str
    dataset: dict[str, Any]
    cells: dict[str, GoldenCell]
    tolerances: dict[str, str]  # selector -> tolerance, as written
    provenance: dict[str, Any]
    created: str
    reidbench_version: str

    def parsed_tolerances(self) -> list[tuple[str, ToleranceRule]]:
        """The file's ``tolerances`` entries (selector as written, rule); an invalid one is a GoldenError naming it."""
        out = []
        for selector, value in self.tolerances.items():
            try:
                out.append((selector, parse_rule(f"{selector}={value}", "golden")))
            except ToleranceError as exc:
                raise GoldenError(f"golden file {self.path}: 'tolerances.{selector}' is not valid: {exc}") from None
        return out

    def rules(self) -> list[ToleranceRule]:
        """The file's tolerance rules, each checked to match at least one of its cells."""
        attacks = {cid: c.attack for cid, c in self.cells.items()}
        out = []
        for selector, rule in self.parsed_tolerances():
            reason = unmatched_reason(rule, attacks)
            if reason:
                raise GoldenError(f"golden file {self.path}: 'tolerances.{selector}' matches nothing ({reason}); fix or delete that rule")
            out.append(rule)
        return out


def _malformed(path: Path, what: str) -> GoldenError:
    return GoldenError(f"golden file {path} is malformed: {what}; fix it, or delete it and re-create it with `reidbench check RUN --baseline {path} --update`")


_TYPE_NAMES: dict[type, str] = {dict: "an object", str: "a string", list: "a list"}


def _get(obj: dict[str, Any], key: str, typ: type, where: str, path: Path, required: bool = True) -> Any:
    full = f"{where}.{key}" if where else key
    if key not in obj:
        if required:
            raise _malformed(path, f"missing key '{full}'")
        return typ()
    value = obj[key]
    if not isinstance(value, typ):
        raise _malformed(path, f"'{full}' should be {_TYPE_NAMES.get(typ, typ.__name__)}, not {_json_type(value)}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def load_golden(path: str | Path) -> Golden:
    """Read and validate a golden file; every problem is a :class:`GoldenError` naming the key."""
    path = Path(path)
    if not path.is_file():
        raise GoldenError(f"golden file {path} does not exist; create it from a trusted run with `reidbench check RUN --baseline {path} --update`")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GoldenError(f"golden file {path} is not valid JSON ({exc}); fix it, or delete it and re-create it with --update") from None
    except UnicodeDecodeError:
        raise GoldenError(f"golden file {path} is not a text file; is it the right file?") from None
    if not isinstance(doc, dict):
        raise _malformed(path, f"the top level should be an object, not {_json_type(doc)}")

    fmt = _get(doc, "format", str, "", path)
    if fmt != GOLDEN_FORMAT:
        if fmt.startswith("reidbench-golden/"):
            raise GoldenError(f"golden file {path} has format {fmt!r}, but reidbench {__version__} reads {GOLDEN_FORMAT!r}; "
                              "use the reidbench version that wrote it, or delete it and re-create it with --update")  # fmt: skip
        raise GoldenError(f"golden file {path} has format {fmt!r}, not {GOLDEN_FORMAT!r}; is it a reidbench golden file?")

    dataset = _get(doc, "dataset", dict, "", path)
    fingerprint = _get(dataset, "fingerprint", str, "dataset", path)
    tolerances = _get(doc, "tolerances", dict, "", path, required=False)
    for selector, value in tolerances.items():
        if not isinstance(value, str):
            raise _malformed(path, f"'tolerances.{selector}' should be a string like \"1pp\" or \"1pp,5%\", not {_json_type(value)}")

    cells: dict[str, GoldenCell] = {}
    entries = _get(doc, "cells", dict, "", path)
    if not entries:
        raise _malformed(path, "'cells' is empty, so it would guard nothing")
    for cell_id, entry in entries.items():
        where = f"cells.{cell_id}"
        if not isinstance(entry, dict):
            raise _malformed(path, f"'{where}' should be an object, not {_json_type(entry)}")
        label = _get(entry, "label", str, where, path)
        config = _get(entry, "config", dict, where, path)
        if not isinstance(config.get("attack", "none"), str):
            raise _malformed(path, f"'{where}.config.attack' should be a string, not {_json_type(config['attack'])}")
        metrics: dict[str, float | None] = {}
        for metric, value in _get(entry, "metrics", dict, where, path).items():
            if metric not in METRICS:
                raise _malformed(path, f"'{where}.metrics' has unknown metric '{metric}' (metrics: {', '.join(METRICS)})")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise _malformed(path, f"'{where}.metrics.{metric}' should be a number or null, not {_json_type(value)}")
            metrics[metric] = None if value is None else float(value)
        cells[cell_id] = GoldenCell(cell_id, label, config, metrics)

    return Golden(path=path, fingerprint=fingerprint, dataset=dataset, cells=cells, tolerances=dict(tolerances),
                  provenance=_get(doc, "provenance", dict, "", path, required=False),
                  created=str(doc.get("created", "")), reidbench_version=str(doc.get("reidbench_version", "")))  # fmt: skip


def run_fingerprint(manifest: Mapping[str, Any], run_dir: str | Path) -> str:
    fp = manifest.get("dataset", {}).get("fingerprint") if isinstance(manifest.get("dataset"), dict) else None
    if not isinstance(fp, str) or not fp:
        raise DataError(f"{Path(run_dir) / 'manifest.json'} has no dataset fingerprint (key dataset.fingerprint); "
                        "a check needs it to know that the numbers come from the same data")  # fmt: skip
    return fp


def _dataset_name(d: Mapping[str, Any]) -> str:
    return str(d.get("name", "?")) if isinstance(d, Mapping) else "?"


# ---------------------------------------------------------------------------------------------
# Comparing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricVerdict:
    """The judgement of one metric of one cell."""

    cell_id: str
    label: str
    metric: str
    golden: float | None  # None: NaN in the golden run
    now: float  # may be NaN
    rule: ToleranceRule
    allowed: float  # the allowed drop in pp, after resolving % against the golden value
    verdict: Verdict

    @property
    def delta(self) -> float:
        return math.nan if self.golden is None else self.now - self.golden

    @property
    def tolerance_text(self) -> str:
        """``1.00pp``; ``2.05pp`` for a relative rule (the rule column shows how it was set)."""
        return f"{self.allowed:.2f}pp"

    def sentence(self) -> str:
        """One line for a JUnit failure or a log: metric, golden, now, delta and tolerance."""
        return (f"{self.metric}: golden {_num(self.golden)}, now {_num(self.now)}, delta {_signed(self.delta)}pp, "
                f"tolerance {self.tolerance_text} [{self.rule.describe()}] -> {self.verdict}")  # fmt: skip


def judge(golden: float | None, now: float, tolerance: Tolerance) -> tuple[Verdict, float]:
    """(verdict, allowed drop in pp) for one number; only a drop beyond the tolerance regresses."""
    if golden is None or math.isnan(golden):
        return ("ok" if math.isnan(now) else "improved"), math.nan
    allowed = tolerance.allowed(golden)
    if math.isnan(now):
        return "REGRESSION", allowed
    delta = now - golden
    if delta < -(allowed + _EPS):
        return "REGRESSION", allowed
    if delta > allowed + _EPS:
        return "improved", allowed
    return "ok", allowed


@dataclass(frozen=True)
class CheckReport:
    """Everything a check found; rendering and the exit code are functions of it."""

    golden: Golden
    verdicts: tuple[MetricVerdict, ...]
    missing: tuple[tuple[str, str], ...]  # (cell_id, label) in the golden file, not in the run
    extra: tuple[tuple[str, str], ...]  # (cell_id, label) in the run, not in the golden file
    context: tuple[str, ...] = ()  # how the run's provenance differs from the golden file's

    @property
    def regressions(self) -> list[MetricVerdict]:
        return [v for v in self.verdicts if v.verdict == "REGRESSION"]

    @property
    def improvements(self) -> list[MetricVerdict]:
        return [v for v in self.verdicts if v.verdict == "improved"]

    @property
    def n_cells(self) -> int:
        return len({v.cell_id for v in self.verdicts})

    @property
    def passed(self) -> bool:
        return not self.regressions

    def summary(self) -> str:
        """``FAIL: 12 cells, 60 metrics compared, 1 regression, 2 improvements``."""
        s = (f"{'OK' if self.passed else 'FAIL'}: {_n(self.n_cells, 'cell')}, {_n(len(self.verdicts), 'metric')} compared, "
             f"{_n(len(self.regressions), 'regression')}, {_n(len(self.improvements), 'improvement')}")  # fmt: skip
        if self.extra:
            s += f"; {_n(len(self.extra), 'run cell')} not in the golden file"
        return s


def compare(golden: Golden, records: Sequence[CellResult], rules: Sequence[ToleranceRule]) -> CheckReport:
    """Judge every metric the golden file lists against the run's cell of the same id."""
    by_id = {r.cell_id: r for r in records}
    verdicts: list[MetricVerdict] = []
    missing = []
    for cid, gc in sorted(golden.cells.items(), key=lambda kv: (kv[1].label, kv[0])):
        rec = by_id.get(cid)
        if rec is None:
            missing.append((cid, gc.label))
            continue
        label = rec.config.label()
        for metric in METRICS:
            if metric not in gc.metrics:
                continue
            rule = resolve_tolerance(rules, cid, rec.config.attack, metric)
            now = float(getattr(rec, metric))
            verdict, allowed = judge(gc.metrics[metric], now, rule.tolerance)
            verdicts.append(MetricVerdict(cid, label, metric, gc.metrics[metric], now, rule, allowed, verdict))
    extra = sorted((r.config.label(), r.cell_id) for r in records if r.cell_id not in golden.cells)
    return CheckReport(golden, tuple(verdicts), tuple(missing), tuple((cid, lab) for lab, cid in extra))


def provenance_context(golden: Golden, manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """What differs between the golden run and this one (versions, device, seed, checkpoints)."""
    old = golden.provenance.get("run", {}) if isinstance(golden.provenance.get("run"), dict) else {}
    lines = []
    old_v, new_v = old.get("versions") or {}, manifest.get("versions") or {}
    if isinstance(old_v, dict) and isinstance(new_v, dict):
        for k in sorted(set(old_v) | set(new_v)):
            if k in old_v and k in new_v and old_v[k] != new_v[k]:
                lines.append(f"{k}: golden {old_v[k]}, run {new_v[k]}")
    for k in ("device", "seed"):
        if k in old and k in manifest and old[k] != manifest[k]:
            lines.append(f"{k}: golden {old[k]}, run {manifest[k]}")
    old_m = golden.provenance.get("models") or {}
    new_m = manifest.get("models") or {}
    if isinstance(old_m, dict) and isinstance(new_m, dict):
        for name in sorted(set(old_m) & set(new_m)):
            a, b = old_m[name], new_m[name]
            if isinstance(a, dict) and isinstance(b, dict) and a.get("sha256") and b.get("sha256") and a["sha256"] != b["sha256"]:
                lines.append(f"model {name}: checkpoint changed (sha256 {str(a['sha256'])[:12]} -> {str(b['sha256'])[:12]})")
    return tuple(lines)


def cli_rules(texts: Sequence[str], cells: Mapping[str, str]) -> list[ToleranceRule]:
    """Parse ``--tol`` values and check each matches a cell of ``cells`` (cell_id -> attack)."""
    rules = []
    for text in texts:
        rule = parse_rule(text, "cli")
        reason = unmatched_reason(rule, cells)
        if reason:
            raise ToleranceError(f"--tol {text} matches nothing in the golden file ({reason})")
        rules.append(rule)
    return rules


def check_run(run_dir: str | Path, golden_path: str | Path, tols: Sequence[str] = (), strict: bool = False) -> CheckReport:
    """Load, validate and compare; a data or usage problem raises, a regression does not."""
    for text in tols:  # syntax first: the cheapest mistake to report
        parse_rule(text, "cli")
    golden = load_golden(golden_path)
    manifest = read_manifest(run_dir)
    records = read_records(run_dir)
    fp = run_fingerprint(manifest, run_dir)
    if fp != golden.fingerprint:
        raise GoldenError(
            f"golden file {golden.path} was recorded on dataset {_dataset_name(golden.dataset)} (fingerprint {golden.fingerprint}) "
            f"but the run used {_dataset_name(manifest.get('dataset', {}))} (fingerprint {fp}); the numbers are not comparable; "
            "run on the golden file's data, or refresh the golden file with --update")  # fmt: skip
    attacks = {cid: c.attack for cid, c in golden.cells.items()}
    rules = [*default_rules(), *golden.rules(), *cli_rules(tols, attacks)]
    report = compare(golden, records, rules)
    if report.missing:
        (cid, label), rest = report.missing[0], report.missing[1:]
        more = f" (and {len(rest)} more: {', '.join(c for c, _ in rest[:5])}{', ...' if len(rest) > 5 else ''})" if rest else ""
        raise GoldenError(f"cell {cid} ({label}) is in the golden file but not in the run{more}; "
                          "re-run with the golden file's grid or refresh the golden file with --update")  # fmt: skip
    if strict and report.extra:
        (cid, label), rest = report.extra[0], report.extra[1:]
        more = f" (and {len(rest)} more)" if rest else ""
        raise GoldenError(f"cell {cid} ({label}) is in the run but not in the golden file{more}, and --strict is on; "
                          "add it with --update or drop --strict")  # fmt: skip
    return dataclasses.replace(report, context=provenance_context(golden, manifest))


# ---------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------

_HEADER = ["cell", "label", "metric", "golden", "now", "delta", "tolerance", "verdict", "rule"]


def _num(x: float | None) -> str:
    return "nan" if x is None or math.isnan(x) else f"{x:.2f}"


def _signed(x: float) -> str:
    return "nan" if math.isnan(x) else f"{x:+.2f}"


def _n(k: int, word: str) -> str:
    return f"{k} {word}{'' if k == 1 else 's'}"


def _rows(report: CheckReport, show_all: bool) -> list[list[str]]:
    shown = report.verdicts if show_all else [v for v in report.verdicts if v.verdict != "ok"]
    return [[v.cell_id, v.label, v.metric, _num(v.golden), _num(v.now), _signed(v.delta),
             "-" if math.isnan(v.allowed) else v.tolerance_text, v.verdict, v.rule.describe()] for v in shown]  # fmt: skip


def render_table(report: CheckReport, show_all: bool = False) -> list[str]:
    """The table of moved metrics (regressions and improvements; every metric with ``show_all``)."""
    rows = _rows(report, show_all)
    if not rows:
        return [f"All {_n(len(report.verdicts), 'metric')} are within tolerance."]
    right = {3, 4, 5, 6}
    widths = [max(len(r[i]) for r in [_HEADER, *rows]) for i in range(len(_HEADER))]

    def fmt(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip()

    return [fmt(_HEADER), fmt(["-" * w for w in widths]), *(fmt(r) for r in rows)]


def render_text(report: CheckReport, show_all: bool = False) -> str:
    """The terminal output: where the golden numbers come from, the table and a summary."""
    g = report.golden
    lines = [f"golden: {g.path} ({_n(len(g.cells), 'cell')}, dataset {_dataset_name(g.dataset)} {g.fingerprint}, "
             f"recorded {g.created or '?'})"]  # fmt: skip
    lines += [f"  differs: {c}" for c in report.context]
    lines += ["", *render_table(report, show_all), ""]
    if report.extra:
        names = ", ".join(f"{cid} ({label})" for cid, label in report.extra[:5])
        lines.append(f"Not checked: {_n(len(report.extra), 'run cell')} not in the golden file: {names}"
                     f"{', ...' if len(report.extra) > 5 else ''}; add them with --update.")  # fmt: skip
    if report.improvements:
        lines.append("Improvements beyond tolerance: refresh the golden file with --update to lock them in.")
    lines.append(report.summary())
    return "\n".join(lines)


def render_junit(report: CheckReport) -> str:
    """JUnit XML: one testcase per golden cell, a failure naming each regressed metric."""
    suite = ET.Element("testsuite", name="reidbench check", tests=str(report.n_cells + len(report.extra)),
                       failures=str(len({v.cell_id for v in report.regressions})), errors="0",
                       skipped=str(len(report.extra)))  # fmt: skip
    by_cell: dict[str, list[MetricVerdict]] = {}
    for v in report.verdicts:
        by_cell.setdefault(v.cell_id, []).append(v)
    classname = f"reidbench.check.{_dataset_name(report.golden.dataset)}"
    for cid, vs in by_cell.items():
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"{vs[0].label} [{cid}]")
        bad = [v for v in vs if v.verdict == "REGRESSION"]
        if bad:
            failure = ET.SubElement(case, "failure", type="regression", message="; ".join(v.sentence() for v in bad))
            failure.text = "\n".join(v.sentence() for v in bad)
        out = ET.SubElement(case, "system-out")
        out.text = "\n".join(v.sentence() for v in vs)
    for cid, label in report.extra:
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"{label} [{cid}]")
        ET.SubElement(case, "skipped", message="in the run but not in the golden file; add it with --update")
    return _xml(suite)


def render_junit_error(message: str) -> str:
    """JUnit XML for a check that could not run (exit 2), so CI shows why rather than nothing."""
    suite = ET.Element("testsuite", name="reidbench check", tests="1", failures="0", errors="1", skipped="0")
    case = ET.SubElement(suite, "testcase", classname="reidbench.check", name="check")
    err = ET.SubElement(case, "error", type="usage", message=message)
    err.text = message
    return _xml(suite)


def _xml(suite: ET.Element) -> str:
    root = ET.Element("testsuites")
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(report: CheckReport, show_all: bool = False) -> str:
    """A summary for a pull-request comment."""
    g = report.golden
    head = "FAIL" if not report.passed else "PASS"
    lines = [f"### reidbench check: {head}", "", f"**{report.summary()}**", ""]
    rows = _rows(report, show_all)
    if rows:
        lines += ["| " + " | ".join(_HEADER) + " |", "|" + "|".join("---:" if i in (3, 4, 5, 6) else "---" for i in range(len(_HEADER))) + "|"]
        for r in rows:
            cells = [f"`{r[0]}`", _md(r[1]), r[2], r[3], r[4], r[5], r[6], f"**{r[7]}**" if r[7] == "REGRESSION" else r[7], _md(r[8])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    else:
        lines += [f"All {_n(len(report.verdicts), 'metric')} are within tolerance.", ""]
    if report.improvements:
        lines += ["Improvements beyond tolerance: refresh the golden file with `reidbench check RUN --baseline "
                  f"{g.path.name} --update` to lock them in.", ""]  # fmt: skip
    if report.extra:
        lines.append(f"Not checked ({_n(len(report.extra), 'run cell')} not in the golden file):")
        lines += [f"- `{cid}` {_md(label)}" for cid, label in report.extra] + [""]
    lines += ["<details><summary>golden file and run</summary>", "",
              f"- golden file `{g.path.name}`, recorded {g.created or '?'} with reidbench {g.reidbench_version or '?'}",
              f"- dataset {_md(_dataset_name(g.dataset))}, fingerprint `{g.fingerprint}`"]  # fmt: skip
    lines += [f"- differs: {_md(c)}" for c in report.context]
    lines += ["", "</details>", ""]
    return "\n".join(lines)


def render_markdown_error(message: str) -> str:
    return f"### reidbench check: ERROR\n\n{_md(message)}\n"


# ---------------------------------------------------------------------------------------------
# Writing a golden file (--update)
# ---------------------------------------------------------------------------------------------

_RUN_KEYS = ("reidbench_version", "created", "versions", "device", "seed", "command", "config")

_ABOUT = ("Golden numbers for `reidbench check RUN --baseline THIS_FILE`; refresh with --update. "
          "tolerances: {\"[attack:NAME:|cell:CELL_ID:]METRIC\": \"Xpp\" | \"Y%\" | \"Xpp,Y%\"}; with both, a drop "
          "within either passes; cell beats attack beats metric, --tol beats this file beats the defaults.")  # fmt: skip


def _finite_or_none(x: float) -> float | None:
    return None if math.isnan(float(x)) else float(x)


def build_golden(records: Sequence[CellResult], manifest: Mapping[str, Any], run_dir: str | Path, *,
                 tolerances: Mapping[str, str] | None = None, created: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """The golden document for a run: every cell with all its metrics, and the run's provenance."""
    fp = run_fingerprint(manifest, run_dir)
    dataset = dict(manifest["dataset"])
    dataset["fingerprint"] = fp
    models = {}
    for name, info in (manifest.get("models") or {}).items():
        models[name] = {k: v for k, v in info.items() if k != "card"} if isinstance(info, dict) else info
    cells = {}
    for r in records:
        cells[r.cell_id] = {
            "label": r.config.label(),
            "config": dataclasses.asdict(r.config),
            "metrics": {m: _finite_or_none(getattr(r, m)) for m in METRICS},
        }
    when = (created or datetime.now(timezone.utc)).astimezone(timezone.utc).replace(microsecond=0)
    return {
        "_about": _ABOUT,
        "format": GOLDEN_FORMAT,
        "created": when.isoformat().replace("+00:00", "Z"),
        "reidbench_version": __version__,
        "dataset": dataset,
        "provenance": {"run_dir": str(run_dir), "run": {k: manifest[k] for k in _RUN_KEYS if k in manifest}, "models": models},
        "tolerances": dict(sorted((tolerances or {}).items())),
        "cells": cells,
    }


def golden_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class UpdateResult:
    path: Path
    n_cells: int
    added: tuple[str, ...]
    removed: tuple[str, ...]
    kept_tolerances: tuple[str, ...]
    dropped_tolerances: tuple[str, ...]  # "rule (reason)"
    moved: CheckReport | None  # the refresh compared with the previous golden file, same data only
    notes: tuple[str, ...]

    def render(self, show_all: bool = False) -> str:
        lines = []
        if self.moved is not None and (show_all or self.moved.regressions or self.moved.improvements):
            lines += ["Changes against the previous golden file (beyond tolerance):", *render_table(self.moved, show_all), ""]
        lines += list(self.notes)
        if self.kept_tolerances:
            lines.append(f"kept tolerances: {', '.join(self.kept_tolerances)}")
        lines += [f"dropped tolerance {d}" for d in self.dropped_tolerances]
        lines.append(f"wrote {self.path}: {_n(self.n_cells, 'cell')} ({len(self.added)} new, {len(self.removed)} removed)")
        return "\n".join(lines)


def update_golden(run_dir: str | Path, golden_path: str | Path, tols: Sequence[str] = (), *, created: datetime | None = None) -> UpdateResult:
    """Write or refresh ``golden_path`` from the run, keeping an existing file's tolerances.

    ``--tol`` rules given with ``--update`` are recorded in the file (replacing the same selector).
    Kept rules that no longer match any cell (``cell:`` of a removed cell, ``attack:`` of an attack
    no longer in the grid) are dropped and reported.
    """
    golden_path = Path(golden_path)
    new_rules = [parse_rule(t, "cli") for t in tols]
    previous = load_golden(golden_path) if golden_path.exists() else None
    manifest = read_manifest(run_dir)
    records = read_records(run_dir)
    if not records:
        raise DataError(f"{run_dir} has no finished cells; nothing to write to a golden file")
    fp = run_fingerprint(manifest, run_dir)
    attacks = {r.cell_id: r.config.attack for r in records}
    for rule in new_rules:
        reason = unmatched_reason(rule, attacks)
        if reason:
            raise ToleranceError(f"--tol {rule} matches nothing in the run ({reason})")

    tolerances: dict[str, str] = {}
    kept, dropped, notes = [], [], []
    if previous is not None:
        for _, rule in previous.parsed_tolerances():
            reason = unmatched_reason(rule, attacks)
            if reason:
                dropped.append(f"{rule} ({reason})")
            else:
                tolerances[rule.selector] = str(rule.tolerance)
                kept.append(str(rule))
    for rule in new_rules:
        tolerances[rule.selector] = str(rule.tolerance)
        notes.append(f"set tolerance {rule}")

    moved = None
    if previous is not None and previous.fingerprint == fp:
        rules = [*default_rules(), *(parse_rule(f"{s}={v}", "golden") for s, v in tolerances.items())]
        moved = compare(previous, records, rules)
    elif previous is not None:
        notes.append(f"dataset changed: fingerprint {previous.fingerprint} -> {fp}")

    doc = build_golden(records, manifest, run_dir, tolerances=tolerances, created=created)
    atomic_write_text(golden_path, golden_json(doc))
    old_ids = set(previous.cells) if previous else set()
    return UpdateResult(
        path=golden_path,
        n_cells=len(doc["cells"]),
        added=tuple(sorted(set(doc["cells"]) - old_ids)) if previous else tuple(sorted(doc["cells"])),
        removed=tuple(sorted(old_ids - set(doc["cells"]))),
        kept_tolerances=tuple(kept),
        dropped_tolerances=tuple(dropped),
        moved=moved,
        notes=tuple(notes),
    )
