"""A cell's id must not depend on how a number was typed (``--eps 2,5`` gave ``5.0``, the default
``5``), and run directories and golden files written before the fix must keep matching."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from reidbench.attacks import attack_params
from reidbench.check import load_golden
from reidbench.eval.planning import AttackRequest, GridSpec, plan_cells
from reidbench.eval.results import (
    CellConfig,
    CellResult,
    artifact_path,
    migrate_config,
    read_records,
)

CARD = SimpleNamespace(inference_defense=None, distance="cosine")


def _plan(**params: object) -> list[str]:
    spec = GridSpec(models=["baseline"], attacks=[AttackRequest("mifgsm", dict(params))], dataset="synthetic-tiny")
    return [c.config.cell_id for c in plan_cells(spec, {"baseline": CARD})]


def test_a_number_typed_as_float_or_int_is_the_same_cell() -> None:
    assert attack_params("mifgsm", eps=5.0) == attack_params("mifgsm", eps=5)
    assert json.dumps(attack_params("mifgsm", eps=5.0)) == json.dumps(attack_params("mifgsm", eps=5))
    assert _plan(eps=5.0) == _plan(eps=5) == _plan()  # --eps 5, --eps 5.0 and the default
    assert _plan(momentum=1) == _plan(momentum=1.0) == _plan()  # a float default stays a float
    assert _plan(eps=2.0) != _plan(eps=5)


def _old_record(tmp: Path) -> CellResult:
    """A record as 0.1 wrote it for ``--eps 2,5``: ``"eps": 5.0`` in the hashed parameters."""
    old_params = {"eps": 5.0, "step": 1.0, "steps": 15, "momentum": 1.0, "eot": 1, "same_camera_guides": True}
    cfg = CellConfig(model="baseline", dataset="synthetic-tiny", attack="mifgsm", target="query",
                     params=json.dumps(old_params, sort_keys=True), eps=5.0, step=1.0, steps=15)  # fmt: skip
    rec = CellResult(config=cfg, family="metric", threat="t", rank1=1.0, rank5=2.0, rank10=3.0, mAP=4.0, mINP=5.0,
                     n_query=3, n_gallery=4, n_valid_query=3, seconds=1.0, fingerprint="f")  # fmt: skip
    (tmp / "cells").mkdir(parents=True)
    (tmp / "cells" / f"{rec.cell_id}.json").write_text(json.dumps(rec.to_dict()))
    artifact_path(tmp, rec.cell_id).parent.mkdir(parents=True)
    np.savez(artifact_path(tmp, rec.cell_id), x=np.zeros(1))
    return rec


def test_an_old_run_directory_is_migrated_and_matches_the_new_plan(tmp_path: Path) -> None:
    old = _old_record(tmp_path / "run")
    assert old.cell_id not in _plan(), "the old id really differs from the planned one"
    (rec,) = read_records(tmp_path / "run")
    assert rec.cell_id in _plan(), "after migration the record is the planned cell: resume will not recompute it"
    assert rec.mAP == old.mAP
    files = sorted(p.stem for p in (tmp_path / "run" / "cells").glob("*.json"))
    assert files == [rec.cell_id], "the record file was renamed, not duplicated"
    assert artifact_path(tmp_path / "run", rec.cell_id).is_file(), "its artifact moved with it"
    assert read_records(tmp_path / "run") == [rec]  # idempotent


def test_an_old_golden_file_keeps_matching(tmp_path: Path) -> None:
    old = _old_record(tmp_path / "run")
    doc = {"format": "reidbench-golden/1", "cells": {old.cell_id: {
        "label": old.config.label(), "config": dataclasses.asdict(old.config),
        "metrics": {"rank1": 1.0, "mAP": 4.0}}}}  # fmt: skip
    src = Path(__file__).parents[1] / "reidbench" / "golden" / "embedded-default.json"
    shipped = json.loads(src.read_text())
    doc = {**{k: v for k, v in shipped.items() if k != "cells"}, "cells": doc["cells"]}
    (tmp_path / "golden.json").write_text(json.dumps(doc))
    golden = load_golden(tmp_path / "golden.json")
    assert list(golden.cells) == [migrate_config(old.config).cell_id] == [c for c in _plan()]


def test_the_shipped_golden_file_needs_no_migration() -> None:
    src = Path(__file__).parents[1] / "reidbench" / "golden" / "embedded-default.json"
    assert set(load_golden(src).cells) == set(json.loads(src.read_text())["cells"])
