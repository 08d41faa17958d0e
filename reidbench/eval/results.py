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

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reidbench.errors import DataError

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

    def label(self) -> str:
        """A short human name: ``baseline / cs (adaptive) / mifgsm eps=5 [query]``."""
        parts = [self.model]
        if self.defense != "none":
            parts.append(f"{self.defense} ({self.mode})")
        att = self.attack
        if self.eps is not None and self.attack != "none":
            att += f" eps={self.eps:g}"
        if self.area is not None:
            att += f" area={self.area:g}"
        if self.surrogate:
            att += f" from {self.surrogate}"
        if self.target not in ("none", "query"):
            att += f" [{self.target}]"
        parts.append(att)
        return " / ".join(parts)


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


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_record(run_dir: Path, result: CellResult) -> Path:
    path = Path(run_dir) / "cells" / f"{result.cell_id}.json"
    atomic_write_text(path, json.dumps(result.to_dict(), indent=1, sort_keys=True))
    return path


def read_records(run_dir: str | Path) -> list[CellResult]:
    """Every finished cell of a run, in a stable order (by cell id)."""
    cells = Path(run_dir) / "cells"
    if not cells.is_dir():
        raise DataError(f"{run_dir} is not a reidbench run directory (no cells/ folder); run `reidbench run --out {run_dir}` first")
    out = []
    for p in sorted(cells.glob("*.json")):
        try:
            out.append(CellResult.from_dict(json.loads(p.read_text())))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise DataError(f"result record {p} is malformed ({exc}); delete it and re-run to recompute that cell") from None
    return out


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
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> CellArtifact:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        d.setdefault("heatmaps", None)
        return cls(**d)


def artifact_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / "artifacts" / f"{cell_id}.npz"
