"""The golden file: reading and validating it, and building a new one from a run.

A versioned JSON document (``"format": "reidbench-golden/1"``), written with sorted keys and
indentation so that a refresh reads well in a diff. ``cells`` maps ``cell_id`` to the cell's
``label``, ``config`` (the :class:`CellConfig` fields, for readers) and ``metrics`` (percent;
``null`` where the run measured NaN). ``dataset.fingerprint`` ties it to one split; ``provenance``
records the run's manifest (versions, seed, device, command, checkpoints' sha256).

A golden file is a CI gate, so a broken one must fail loudly rather than pass everything: besides
types and keys, :func:`load_golden` refuses a non-finite metric (``NaN``, ``Infinity``, which
Python's json reads), a cell with no metrics, and a cell that lacks a metric other cells list.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from reidbench import __version__
from reidbench.check.tolerances import ToleranceError, ToleranceRule, parse_rule, unmatched_reason
from reidbench.errors import DataError
from reidbench.eval.results import METRICS, CellConfig, CellResult, migrate_config

GOLDEN_FORMAT = "reidbench-golden/1"


class GoldenError(DataError):
    """A golden file that is missing, malformed, of another format or of another dataset."""


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


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


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
    doc = _read_document(path)
    _check_format(doc, path)
    dataset = _get(doc, "dataset", dict, "", path)
    fingerprint = _get(dataset, "fingerprint", str, "dataset", path)
    tolerances = _get(doc, "tolerances", dict, "", path, required=False)
    for selector, value in tolerances.items():
        if not isinstance(value, str):
            raise _malformed(path, f"'tolerances.{selector}' should be a string like \"1pp\" or \"1pp,5%\", not {_json_type(value)}")
    cells = _read_cells(doc, path)
    return Golden(path=path, fingerprint=fingerprint, dataset=dataset, cells=cells, tolerances=dict(tolerances),
                  provenance=_get(doc, "provenance", dict, "", path, required=False),
                  created=str(doc.get("created", "")), reidbench_version=str(doc.get("reidbench_version", "")))  # fmt: skip


def _read_document(path: Path) -> dict[str, Any]:
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
    return doc


def _check_format(doc: dict[str, Any], path: Path) -> None:
    fmt = _get(doc, "format", str, "", path)
    if fmt == GOLDEN_FORMAT:
        return
    if fmt.startswith("reidbench-golden/"):
        raise GoldenError(f"golden file {path} has format {fmt!r}, but reidbench {__version__} reads {GOLDEN_FORMAT!r}; "
                          "use the reidbench version that wrote it, or delete it and re-create it with --update")  # fmt: skip
    raise GoldenError(f"golden file {path} has format {fmt!r}, not {GOLDEN_FORMAT!r}; is it a reidbench golden file?")


def _read_cells(doc: dict[str, Any], path: Path) -> dict[str, GoldenCell]:
    entries = _get(doc, "cells", dict, "", path)
    if not entries:
        raise _malformed(path, "'cells' is empty, so it would guard nothing")
    cells = {}
    for cell_id, entry in entries.items():
        cell = _read_cell(cell_id, entry, path)
        cells[cell.cell_id] = cell
    _check_same_metrics(cells, path)
    return cells


def _current_id(cell_id: str, config: dict[str, Any]) -> str:
    """The id this cell has under today's parameter normalisation (old golden files keep matching).

    Only a config that reproduces its stored id is trusted to be migrated.
    """
    known = {f.name for f in dataclasses.fields(CellConfig)}
    try:
        cfg = CellConfig(**{k: v for k, v in config.items() if k in known})
        if cfg.cell_id != cell_id:
            return cell_id
        return migrate_config(cfg).cell_id
    except (TypeError, ValueError):
        return cell_id


def _read_cell(cell_id: str, entry: Any, path: Path) -> GoldenCell:
    where = f"cells.{cell_id}"
    if not isinstance(entry, dict):
        raise _malformed(path, f"'{where}' should be an object, not {_json_type(entry)}")
    label = _get(entry, "label", str, where, path)
    config = _get(entry, "config", dict, where, path)
    if not isinstance(config.get("attack", "none"), str):
        raise _malformed(path, f"'{where}.config.attack' should be a string, not {_json_type(config['attack'])}")
    return GoldenCell(_current_id(cell_id, config), label, config, _read_metrics(entry, where, path))


def _read_metrics(entry: dict[str, Any], where: str, path: Path) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for metric, value in _get(entry, "metrics", dict, where, path).items():
        if metric not in METRICS:
            raise _malformed(path, f"'{where}.metrics' has unknown metric '{metric}' (metrics: {', '.join(METRICS)})")
        metrics[metric] = _read_value(value, f"{where}.metrics.{metric}", path)
    if not metrics:
        raise _malformed(path, f"'{where}.metrics' is empty, so the cell would guard nothing")
    return metrics


def _read_value(value: Any, where: str, path: Path) -> float | None:
    """A golden number: finite, or null (the golden run measured NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _malformed(path, f"'{where}' should be a number or null, not {_json_type(value)}")
    try:
        x = float(value)
    except OverflowError:  # an integer literal beyond float range
        x = math.inf
    if not math.isfinite(x):
        raise _malformed(path, f"'{where}' is {json.dumps(x)}, which no run can be compared with; "
                               "a golden value must be a finite number (null where the golden run measured NaN)")  # fmt: skip
    return x


def _check_same_metrics(cells: Mapping[str, GoldenCell], path: Path) -> None:
    """Every cell lists the same metrics: a cell that lacks one would silently go unchecked."""
    listed = {m for c in cells.values() for m in c.metrics}
    for cid, cell in cells.items():
        lacking = [m for m in METRICS if m in listed and m not in cell.metrics]
        if lacking:
            other = next(o for o, c in cells.items() if lacking[0] in c.metrics)
            raise _malformed(path, f"'cells.{cid}.metrics' lacks {', '.join(lacking)}, which cell {other} lists; "
                                   "every cell must list the same metrics (null for one the golden run measured as NaN)")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The run side, and writing
# ---------------------------------------------------------------------------------------------


def _run_datasets(manifest: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The run's datasets when it ran on more than one (``manifest.datasets``), by name; else []."""
    many = manifest.get("datasets")
    if isinstance(many, list) and len(many) > 1 and all(isinstance(d, Mapping) for d in many):
        return sorted(many, key=lambda d: str(d.get("name", "")))
    return []


def run_fingerprint(manifest: Mapping[str, Any], run_dir: str | Path) -> str:
    """The run's dataset fingerprint; a run on several datasets has theirs joined with ``+``, by name."""
    many = _run_datasets(manifest)
    if many:
        fps = [d.get("fingerprint") for d in many]
        if all(isinstance(f, str) and f for f in fps):
            return "+".join(fps)  # type: ignore[arg-type]
        fp = None
    else:
        fp = manifest.get("dataset", {}).get("fingerprint") if isinstance(manifest.get("dataset"), dict) else None
    if not isinstance(fp, str) or not fp:
        raise DataError(f"{Path(run_dir) / 'manifest.json'} has no dataset fingerprint (key dataset.fingerprint); "
                        "a check needs it to know that the numbers come from the same data")  # fmt: skip
    return fp


def run_dataset(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The run's ``dataset`` object as a golden file records it: for several datasets their names
    joined with ``+`` and each one's entry under ``datasets``."""
    many = _run_datasets(manifest)
    if many:
        return {"name": "+".join(str(d.get("name", "?")) for d in many), "datasets": [dict(d) for d in many]}
    return dict(manifest.get("dataset") or {})


def dataset_name(d: Mapping[str, Any]) -> str:
    """The ``name`` of a golden file's or manifest's ``dataset`` object, or ``?``."""
    return str(d.get("name", "?")) if isinstance(d, Mapping) else "?"


_RUN_KEYS = ("reidbench_version", "created", "versions", "device", "seed", "command", "config")

_ABOUT = ("Golden numbers for `reidbench check RUN --baseline THIS_FILE`; refresh with --update. "
          "tolerances: {\"[attack:NAME:|cell:CELL_ID:]METRIC\": \"Xpp\" | \"Y%\" | \"Xpp,Y%\"}; with both, a drop "
          "within either passes; cell beats attack beats metric, --tol beats this file beats the defaults.")  # fmt: skip


def _golden_metrics(r: CellResult, run_dir: str | Path) -> dict[str, float | None]:
    """A cell's metrics as the golden file records them: NaN -> null; an infinity is refused."""
    out: dict[str, float | None] = {}
    for m in METRICS:
        x = float(getattr(r, m))
        if math.isinf(x):
            raise DataError(f"cell {r.cell_id} ({r.config.label()}) of {run_dir} has {m} = {x}, which is not a measurement; "
                            "re-run that cell before recording a golden file from this run")  # fmt: skip
        out[m] = None if math.isnan(x) else x
    return out


def build_golden(records: Sequence[CellResult], manifest: Mapping[str, Any], run_dir: str | Path, *,
                 tolerances: Mapping[str, str] | None = None, created: datetime | None = None) -> dict[str, Any]:  # fmt: skip
    """The golden document for a run: every cell with all its metrics, and the run's provenance."""
    fp = run_fingerprint(manifest, run_dir)
    dataset = run_dataset(manifest)
    dataset["fingerprint"] = fp
    models = {}
    for name, info in (manifest.get("models") or {}).items():
        models[name] = {k: v for k, v in info.items() if k != "card"} if isinstance(info, dict) else info
    cells = {}
    for r in records:
        cells[r.cell_id] = {"label": r.config.label(), "config": dataclasses.asdict(r.config), "metrics": _golden_metrics(r, run_dir)}
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
    """The file's text: sorted keys, indented; strict JSON (a NaN or infinity anywhere is refused)."""
    try:
        return json.dumps(doc, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except ValueError as exc:
        raise GoldenError(f"refusing to write a golden file that is not strict JSON ({exc}); "
                          "a NaN or infinity in the run's manifest or cells cannot be recorded") from None  # fmt: skip
