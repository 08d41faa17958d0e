"""``reidbench check RUN --baseline FILE --update``: write or refresh a golden file from a run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from reidbench.check._format import plural
from reidbench.check.comparison import CheckReport, compare
from reidbench.check.golden import Golden, build_golden, golden_json, load_golden, run_fingerprint
from reidbench.check.render import render_table
from reidbench.check.tolerances import (
    ToleranceError,
    ToleranceRule,
    default_rules,
    parse_rule,
    unmatched_reason,
)
from reidbench.errors import DataError
from reidbench.eval.results import atomic_write_text, read_manifest, read_records


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
        lines.append(f"wrote {self.path}: {plural(self.n_cells, 'cell')} ({len(self.added)} new, {len(self.removed)} removed)")
        return "\n".join(lines)


def update_golden(run_dir: str | Path, golden_path: str | Path, tols: Sequence[str] = (), *, created: datetime | None = None) -> UpdateResult:
    """Write or refresh ``golden_path`` from the run, keeping an existing file's tolerances.

    ``--tol`` rules given with ``--update`` are recorded in the file (replacing the same selector).
    Kept rules that no longer match any cell (``cell:`` of a removed cell, ``attack:`` of an attack
    no longer in the grid) are dropped and reported. An existing file that does not load is left
    alone (a :class:`GoldenError`): refreshing it would lose its tolerances.
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

    tolerances, kept, dropped = _kept_tolerances(previous, attacks)
    notes = []
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


def _kept_tolerances(previous: Golden | None, attacks: dict[str, str]) -> tuple[dict[str, str], list[str], list[str]]:
    """The previous file's rules that still match a cell of the run (selector -> tolerance), kept and dropped ones."""
    tolerances: dict[str, str] = {}
    kept: list[str] = []
    dropped: list[str] = []
    rules: list[tuple[str, ToleranceRule]] = previous.parsed_tolerances() if previous is not None else []
    for _, rule in rules:
        reason = unmatched_reason(rule, attacks)
        if reason:
            dropped.append(f"{rule} ({reason})")
        else:
            tolerances[rule.selector] = str(rule.tolerance)
            kept.append(str(rule))
    return tolerances, kept, dropped
