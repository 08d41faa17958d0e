"""Comparing a run with a golden file: the verdict on each number, and the whole check.

Robustness numbers are "higher is better", so only a drop can regress: a drop beyond the
tolerance is a REGRESSION, a rise beyond it is shown as ``improved`` (so the golden file can be
refreshed on purpose), anything else is ``ok``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reidbench.check._format import num, plural, signed
from reidbench.check.golden import (
    Golden,
    GoldenError,
    dataset_name,
    load_golden,
    run_dataset,
    run_fingerprint,
)
from reidbench.check.tolerances import (
    Tolerance,
    ToleranceRule,
    cli_rules,
    default_rules,
    parse_rule,
    resolve_tolerance,
)
from reidbench.eval.results import METRICS, CellResult, read_manifest, read_records

Verdict = Literal["REGRESSION", "improved", "ok"]

_EPS = 1e-9  # float slack, so that a drop of exactly the tolerance passes


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
        return (f"{self.metric}: golden {num(self.golden)}, now {num(self.now)}, delta {signed(self.delta)}pp, "
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
        s = (f"{'OK' if self.passed else 'FAIL'}: {plural(self.n_cells, 'cell')}, {plural(len(self.verdicts), 'metric')} compared, "
             f"{plural(len(self.regressions), 'regression')}, {plural(len(self.improvements), 'improvement')}")  # fmt: skip
        if self.extra:
            s += f"; {plural(len(self.extra), 'run cell')} not in the golden file"
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
            f"golden file {golden.path} was recorded on dataset {dataset_name(golden.dataset)} (fingerprint {golden.fingerprint}) "
            f"but the run used {dataset_name(run_dataset(manifest))} (fingerprint {fp}); the numbers are not comparable; "
            "run on the golden file's data, or refresh the golden file with --update")  # fmt: skip
    attacks = {cid: c.attack for cid, c in golden.cells.items()}
    rules = [*default_rules(), *golden.rules(), *cli_rules(tols, attacks)]
    report = compare(golden, records, rules)
    _check_grids_match(report, strict)
    return dataclasses.replace(report, context=provenance_context(golden, manifest))


def _check_grids_match(report: CheckReport, strict: bool) -> None:
    """A golden cell missing from the run is an error; a run cell missing from the golden file only with ``strict``."""
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
