"""Result records: one typed row per benchmark cell, and the run directory that holds them.

A run directory::

    RUN/
      manifest.json          versions, seeds, configuration, dataset fingerprint, checkpoints, device
      cells/<cell_id>.json   one CellResult per finished cell, written atomically when it ends
      artifacts/<cell_id>.npz  samples for the reports (ranked lists, perturbations, heatmaps)
      results.csv            all cells, one row each (rewritten after every cell)
      results.jsonl          the same, as JSON lines (lists and all)
      report.pdf             written by ``reidbench report``

Reports and ``reidbench check`` read only these files; they never re-run anything.
Metric values are in percent (0-100), as papers print them. Budgets (eps, step) are in /255 units.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reidbench.attack_types import Family
from reidbench.errors import DataError, ReidbenchError

log = logging.getLogger(__name__)

METRICS = ("rank1", "rank5", "rank10", "mAP", "mINP")


@dataclass(frozen=True)
class CellConfig:
    """What identifies a cell: everything that changes its numbers.

    ``defense`` is ``"none"`` or the defenses joined with ``+`` in the order applied; ``mode`` is
    ``"none"`` when there is no defense (or the attack is ``none``), else ``"oblivious"`` or
    ``"adaptive"``. ``target`` is the attacked side: ``query``, ``gallery``, ``both``, or ``none``
    for clean cells. ``surrogate`` is empty for white-box attacks and names the crafting model for
    transfer attacks. ``params`` holds every attack parameter (budgets in /255 units) as a sorted
    JSON object; ``eps``/``step``/``steps``/``area`` repeat the common ones for tables and plots.
    """

    model: str
    dataset: str
    attack: str = "none"
    defense: str = "none"
    mode: str = "none"
    target: str = "none"
    surrogate: str = ""
    params: str = "{}"
    eps: float | None = None
    step: float | None = None
    steps: int | None = None
    area: float | None = None
    seed: int = 0
    rerank: bool = False
    distance: str = "cosine"
    ap_variant: str = "market"

    @property
    def cell_id(self) -> str:
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def attack_text(self) -> str:
        """The attack and its budget: ``mifgsm eps=5``, ``erasing area=0.2``, ``sma eps=5 from etndnet [both]``."""
        att = self.attack
        if self.eps is not None and self.attack != "none":
            att += f" eps={self.eps:g}"
        if self.area is not None:
            att += f" area={self.area:g}"
        if self.surrogate:
            att += f" from {self.surrogate}"
        if self.target not in ("none", "query", ""):
            att += f" [{self.target}]"
        return att

    def label(self) -> str:
        """A short human name: ``baseline / cs (adaptive) / mifgsm eps=5 [both]``."""
        parts = [self.model]
        if self.defense != "none":
            parts.append(f"{self.defense} ({self.mode})")
        parts.append(self.attack_text())
        return " / ".join(parts)

    def slug(self) -> str:
        """The label as a folder name: ``baseline__mifgsm_eps5``."""
        return self.label().replace(" / ", "__").replace(" ", "_").replace("=", "").replace("[", "").replace("]", "")


@dataclass(frozen=True)
class CellResult:
    """One finished cell: its configuration, its numbers and how it was obtained."""

    config: CellConfig
    family: str  # clean, metric, classification, occlusion, feature-map, noise
    threat: str  # who is attacked, what the attacker knows, budget
    rank1: float
    rank5: float
    rank10: float
    mAP: float
    mINP: float
    n_query: int
    n_gallery: int
    n_valid_query: int
    seconds: float
    fingerprint: str
    draws: int = 1  # >1 for randomised defenses evaluated over several draws
    mAP_worst: float | None = None
    rank1_worst: float | None = None
    mAP_std: float | None = None
    warnings: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cell_id(self) -> str:
        return self.config.cell_id

    @property
    def kind(self) -> Family:
        """The attack family as a :class:`~reidbench.attack_types.Family`, whose traits callers ask."""
        return Family.of(self.family)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["warnings"] = list(self.warnings)
        d["cell_id"] = self.cell_id
        return d

    def flat(self) -> dict[str, Any]:
        """One flat row (the config's fields first), for CSV and pandas."""
        d = self.to_dict()
        cfg = d.pop("config")
        extra = d.pop("extra")
        row: dict[str, Any] = {"cell_id": d.pop("cell_id"), **cfg, **d}
        row["warnings"] = " | ".join(self.warnings)
        for k, v in extra.items():
            row[f"x_{k}"] = v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v)
        return row

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CellResult:
        d = dict(d)
        d.pop("cell_id", None)
        known_cfg = {f.name for f in dataclasses.fields(CellConfig)}
        cfg = CellConfig(**{k: v for k, v in d.pop("config").items() if k in known_cfg})
        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}
        d["warnings"] = tuple(d.get("warnings", ()))
        return cls(config=cfg, **d)

    def with_warnings(self, *warnings: str) -> CellResult:
        new = tuple(w for w in warnings if w not in self.warnings)
        return dataclasses.replace(self, warnings=self.warnings + new)


_NUM = (int, float)
_CONFIG_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    # field: (accepted types, may be null)
    "model": ((str,), False), "dataset": ((str,), False), "attack": ((str,), False), "defense": ((str,), False),
    "mode": ((str,), False), "target": ((str,), False), "surrogate": ((str,), False), "params": ((str,), False),
    "eps": (_NUM, True), "step": (_NUM, True), "steps": ((int,), True), "area": (_NUM, True), "seed": ((int,), False),
    "rerank": ((bool,), False), "distance": ((str,), False), "ap_variant": ((str,), False),
}  # fmt: skip
_RESULT_SCHEMA: dict[str, tuple[tuple[type, ...], bool]] = {
    "family": ((str,), False), "threat": ((str,), False), "rank1": (_NUM, False), "rank5": (_NUM, False),
    "rank10": (_NUM, False), "mAP": (_NUM, False), "mINP": (_NUM, False), "n_query": ((int,), False),
    "n_gallery": ((int,), False), "n_valid_query": ((int,), False), "seconds": (_NUM, False),
    "fingerprint": ((str,), False), "draws": ((int,), False), "mAP_worst": (_NUM, True),
    "rank1_worst": (_NUM, True), "mAP_std": (_NUM, True), "warnings": ((list,), False), "extra": ((dict,), False),
}  # fmt: skip
_REQUIRED = {"config", "family", "rank1", "rank5", "rank10", "mAP", "mINP", "n_query", "n_gallery", "n_valid_query"}
_REQUIRED_CONFIG = {"model", "dataset"}


def _type_name(value: Any) -> str:
    return "null" if value is None else {str: "a string", bool: "a boolean", list: "a list", dict: "an object"}.get(
        type(value), "a number" if isinstance(value, _NUM) else type(value).__name__)


def _check_fields(d: dict[str, Any], schema: dict[str, tuple[tuple[type, ...], bool]], where: str) -> None:
    for key, (types, nullable) in schema.items():
        if key not in d:
            continue
        v = d[key]
        ok = (v is None and nullable) or (isinstance(v, types) and not (isinstance(v, bool) and bool not in types))
        if not ok:
            want = " or ".join(_type_name(t()) if t is not int else "an integer" for t in types) + (" or null" if nullable else "")
            raise DataError(f"{where}{key} is {_type_name(v)} ({v!r:.40}), not {want}")


def validate_record(d: Any) -> None:
    """Refuse a record that is not what :meth:`CellResult.to_dict` writes (a hand-edited or
    truncated file): a missing field, a string where a number belongs, a malformed config."""
    if not isinstance(d, dict):
        raise DataError(f"the record is {_type_name(d)}, not an object")
    missing = sorted(_REQUIRED - set(d))
    if missing:
        raise DataError(f"the record has no {', '.join(missing)}")
    cfg = d["config"]
    if not isinstance(cfg, dict):
        raise DataError(f"config is {_type_name(cfg)}, not an object")
    missing = sorted(_REQUIRED_CONFIG - set(cfg))
    if missing:
        raise DataError(f"config has no {', '.join(missing)}")
    _check_fields(cfg, _CONFIG_SCHEMA, "config.")
    _check_fields(d, _RESULT_SCHEMA, "")
    try:
        params = json.loads(cfg.get("params", "{}"))
    except ValueError:
        params = None
    if not isinstance(params, dict):
        raise DataError("config.params is not a JSON object")


def disk_full_error(path: Path, needed: int) -> ReidbenchError:
    """One line for a full disk: what was being written, how much it needs, what is free."""
    import shutil

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        free = 0
    return ReidbenchError(f"the disk is full while writing {path} (needs about {needed / 1e6:.1f} MB, "
                          f"{free / 1e6:.1f} MB free); free some space and re-run the same command: "
                          "every finished cell is kept and the run resumes")  # fmt: skip


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file. A full disk
    leaves the old file as it was, removes the temporary one and raises one clear line."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full_error(path, len(text.encode())) from None
        raise ReidbenchError(f"cannot write {path}: {exc.strerror or exc}; check that its folder exists and is "
                             "writable, or write somewhere else") from None  # fmt: skip


def write_record(run_dir: Path, result: CellResult) -> Path:
    path = Path(run_dir) / "cells" / f"{result.cell_id}.json"
    atomic_write_text(path, json.dumps(result.to_dict(), indent=1, sort_keys=True))
    return path


def _has_whole_float(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, list):
        return any(_has_whole_float(v) for v in value)
    if isinstance(value, dict):
        return any(_has_whole_float(v) for v in value.values())
    return False


def migrate_config(cfg: CellConfig) -> CellConfig:
    """``cfg`` with its parameters written as reidbench writes them now.

    Before 0.2 a number's type came from how it was typed (``--eps 2,5`` stored ``"eps": 5.0``
    while the default stored ``5``), so the same cell had two ids. Parameters are now normalised
    to the type of their default before the id is hashed; this brings old configs to that form.
    Attacks that are not registered in this process are left as they are.
    """
    try:
        params = json.loads(cfg.params)
    except (TypeError, ValueError):
        return cfg
    if cfg.attack == "none" or not isinstance(params, dict) or not _has_whole_float(params):
        return cfg
    from reidbench.attacks import attack_params  # only for old records: keeps reading light
    from reidbench.errors import ReidbenchError

    try:
        norm = attack_params(cfg.attack, **params)
    except ReidbenchError:
        return cfg
    return dataclasses.replace(cfg, params=json.dumps(norm, sort_keys=True))


def _migrate_file(run_dir: Path, path: Path, record: CellResult) -> CellResult:
    """Rename an old record (and its artifact) to its id under today's normalisation."""
    cfg = migrate_config(record.config)
    if cfg == record.config:
        return record
    new = dataclasses.replace(record, config=cfg)
    target = path.with_name(f"{new.cell_id}.json")
    if not target.exists():
        atomic_write_text(target, json.dumps(new.to_dict(), indent=1, sort_keys=True))
        old_art, new_art = artifact_path(run_dir, record.cell_id), artifact_path(run_dir, new.cell_id)
        if old_art.is_file() and not new_art.exists():
            old_art.replace(new_art)
    path.unlink(missing_ok=True)
    return new


def read_records(run_dir: str | Path, *, skipped: list[str] | None = None) -> list[CellResult]:
    """Every finished cell of a run, in a stable order (by cell id).

    The run directory is untrusted input: a record that fails validation (unreadable JSON, a
    missing field, a wrong type) is left out with one logged line naming the file and the fix,
    also appended to ``skipped``; the good records are returned intact. A re-run recomputes the
    cells left out. Records written by older versions are migrated in place (:func:`migrate_config`).
    """
    cells = Path(run_dir) / "cells"
    if not cells.is_dir():
        raise DataError(f"{run_dir} is not a reidbench run directory (no cells/ folder); run `reidbench run --out {run_dir}` first")
    out: dict[str, CellResult] = {}
    for p in sorted(cells.glob("*.json")):
        try:
            d = json.loads(p.read_text())
            validate_record(d)
            record = CellResult.from_dict(d)
        except (ValueError, KeyError, TypeError, OSError, DataError) as exc:
            line = (f"skipped result record {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                    "delete it, and a re-run of the same command recomputes that cell")  # fmt: skip
            log.warning(line)
            if skipped is not None:
                skipped.append(line)
            continue
        record = _migrate_file(Path(run_dir), p, record)
        out.setdefault(record.cell_id, record)
    return [out[k] for k in sorted(out)]


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    p = Path(run_dir) / "manifest.json"
    if not p.is_file():
        raise DataError(f"{run_dir} has no manifest.json; is it a reidbench run directory?")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{p} is malformed: {exc}") from None


def results_frame(records: list[CellResult]) -> Any:
    """The records as a pandas DataFrame, one row per cell."""
    import pandas as pd

    return pd.DataFrame([r.flat() for r in records])


def write_tables(run_dir: Path, records: list[CellResult]) -> None:
    """``results.csv`` and ``results.jsonl`` from the records (rewritten atomically)."""
    df = results_frame(records)
    atomic_write_text(Path(run_dir) / "results.csv", df.to_csv(index=False))
    atomic_write_text(Path(run_dir) / "results.jsonl", "".join(json.dumps(r.to_dict(), sort_keys=True) + "\n" for r in records))


# ---------------------------------------------------------------------------------------------
# Artifacts: samples of what an attack did, for the reports
# ---------------------------------------------------------------------------------------------


@dataclass
class CellArtifact:
    """A few sample queries of one cell, enough to draw ranked lists and perturbations.

    Images are uint8 (N, 3, H, W). ``*_topk`` index ``gallery_thumbs`` (the union of the shown
    gallery images, stored once); ``*_match`` says whether each shown gallery image has the
    query's identity. ``heatmaps`` (N, h, w), optional, are occlusion-sensitivity maps (AOS).
    """

    query_index: np.ndarray  # (N,) index into the query set
    query_pids: np.ndarray
    clean: np.ndarray
    attacked: np.ndarray
    gallery_thumbs: np.ndarray  # (M, 3, H, W)
    clean_topk: np.ndarray  # (N, k) index into gallery_thumbs
    attacked_topk: np.ndarray
    clean_match: np.ndarray  # (N, k) bool
    attacked_match: np.ndarray
    heatmaps: np.ndarray | None = None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        try:
            np.savez_compressed(tmp, **arrays)
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full_error(path, sum(a.nbytes for a in arrays.values())) from None
            raise

    @classmethod
    def load(cls, path: Path) -> CellArtifact:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:  # our handle: closed even if not a zip
            d = {k: z[k] for k in z.files}
        d.setdefault("heatmaps", None)
        return cls(**d)


def artifact_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / "artifacts" / f"{cell_id}.npz"
