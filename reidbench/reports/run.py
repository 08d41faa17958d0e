"""Reading a run directory for a report: records, manifest (every key optional) and artifacts."""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reidbench.errors import DataError
from reidbench.eval.results import (
    CellArtifact,
    CellResult,
    artifact_path,
    read_manifest,
    read_records,
)

log = logging.getLogger(__name__)


@dataclass
class RunData:
    """What a report is made from. ``notes`` collects what was missing or unreadable."""

    path: Path
    records: list[CellResult]
    manifest: dict[str, Any]
    artifacts: dict[str, CellArtifact] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def load_run(run_dir: str | Path) -> RunData:
    """Read ``run_dir``; a folder without finished cells is a :class:`DataError`.

    A missing ``manifest.json`` or an unreadable artifact is noted in the report, not fatal.
    """
    path = Path(run_dir)
    skipped: list[str] = []
    records = read_records(path, skipped=skipped)  # each skipped record is also logged, one line each
    if not records:
        raise DataError(f"{path} has no finished cells (cells/ is empty); nothing to report. Run `reidbench run --out {path}` first")
    notes: list[str] = [f"Left out: {line}" for line in skipped]
    try:
        manifest = read_manifest(path)
    except DataError:
        if (path / "manifest.json").exists():
            raise
        log.warning("%s has no manifest.json; the report leaves out versions, seeds, fingerprint and checkpoints", path)
        manifest = {}
        notes.append("This run has no manifest.json: versions, seeds, dataset fingerprint and checkpoints are unknown.")
    if not isinstance(manifest, dict):
        manifest = {}
        notes.append("manifest.json is not a JSON object; ignored.")
    artifacts: dict[str, CellArtifact] = {}
    for r in records:
        p = artifact_path(path, r.cell_id)
        if not p.is_file():
            continue
        try:
            artifacts[r.cell_id] = CellArtifact.load(p)
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError) as exc:
            line = f"Artifact {p} could not be read ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); its pictures are left out."
            log.warning(line)
            notes.append(line)
    artifacts = {k: a for k, a in artifacts.items() if _usable(a, notes, k)}
    return RunData(path, records, manifest, artifacts, notes)


def _usable(a: CellArtifact, notes: list[str], cell_id: str) -> bool:
    try:
        ok = a.clean.ndim == 4 and a.clean.shape[1] == 3 and a.attacked.shape == a.clean.shape and len(a.query_index) == len(a.clean)
        ok = ok and a.gallery_thumbs.ndim == 4 and a.clean_topk.shape == a.clean_match.shape
        ok = ok and a.attacked_topk.shape == a.attacked_match.shape and len(a.clean_topk) == len(a.clean)
        if a.heatmaps is not None:
            ok = ok and a.heatmaps.ndim == 3 and len(a.heatmaps) == len(a.clean)
        if ok and a.gallery_thumbs.size:
            ok = int(np.max(a.clean_topk, initial=0)) < len(a.gallery_thumbs) and int(np.max(a.attacked_topk, initial=0)) < len(a.gallery_thumbs)
    except (AttributeError, TypeError, ValueError):
        ok = False
    if not ok:
        log.warning("artifact %s.npz has inconsistent shapes; its pictures are left out of the report", cell_id)
        notes.append(f"Artifact {cell_id}.npz has inconsistent shapes; its pictures are left out.")
    return bool(ok)
