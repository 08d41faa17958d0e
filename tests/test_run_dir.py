"""The run directory is untrusted input: corrupted cells and caches are reported with one line
naming the file, never a traceback, and the good cells survive report, check and resume."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from reidbench.cli import main
from reidbench.eval import harness
from reidbench.eval.harness import AttackRequest, GridSpec, run_grid
from reidbench.eval.results import read_records


def _spec(ckpt: Path, root: Path) -> GridSpec:
    return GridSpec(models=["baseline"], attacks=[AttackRequest("none"), AttackRequest("noise", {"eps": 8}),
                                                  AttackRequest("erasing", {"area": 0.3})],
                    dataset="synthetic-tiny", data_root=root, checkpoints={"baseline": str(ckpt)}, batch_size=16,
                    samples=2)  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tiny_ckpt: Path, tiny_dataset, tmp_path_factory) -> tuple[Path, dict[str, float]]:  # type: ignore[no-untyped-def]
    run = tmp_path_factory.mktemp("rundir") / "run"
    records = run_grid(_spec(tiny_ckpt, tiny_dataset.root.parent), run, progress=False)
    return run, {r.cell_id: r.mAP for r in records}


def _corrupt(src: Path, dst: Path) -> dict[str, str]:
    """Copy the run and break two cells and the gallery cache; return {what: file name}."""
    shutil.copytree(src, dst)
    cells = sorted((dst / "cells").glob("*.json"))
    noise = next(p for p in cells if json.loads(p.read_text())["config"]["attack"] == "noise")
    erasing = next(p for p in cells if json.loads(p.read_text())["config"]["attack"] == "erasing")
    d = json.loads(noise.read_text())
    d["mAP"] = "58.2"  # a string where a number belongs
    noise.write_text(json.dumps(d))
    d = json.loads(erasing.read_text())
    d["config"] = "baseline/erasing"  # a malformed config
    erasing.write_text(json.dumps(d))
    for cache in (dst / "cache").glob("gallery-*"):
        cache.write_bytes(pickle.dumps({"__reduce__": "os.system"}) + b"garbage")
    return {"noise": noise.name, "erasing": erasing.name}


def test_bad_cells_are_named_and_the_good_ones_kept(finished_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run, maps = finished_run
    bad = _corrupt(run, tmp_path / "run")
    skipped: list[str] = []
    good = read_records(tmp_path / "run", skipped=skipped)
    assert [r.config.attack for r in good] == ["none"]
    assert good[0].mAP == maps[good[0].cell_id]
    assert len(skipped) == 2
    assert any(bad["noise"] in s and "mAP is a string" in s for s in skipped)
    assert any(bad["erasing"] in s and "config is a string" in s for s in skipped)


def test_report_and_check_survive_a_corrupted_run(finished_run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run, _ = finished_run
    runner = CliRunner()
    golden = tmp_path / "golden.json"
    res = runner.invoke(main, ["check", str(run), "--baseline", str(golden), "--update"])
    assert res.exit_code == 0, res.output
    _corrupt(run, tmp_path / "run")
    res = runner.invoke(main, ["report", str(tmp_path / "run"), "--format", "md"])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["check", str(tmp_path / "run"), "--baseline", str(golden)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert res.exit_code in (1, 2), "two golden cells are missing from the run: the check must not pass"


def test_resume_recomputes_exactly_the_bad_cells_and_the_cache(finished_run, tiny_ckpt: Path, tiny_dataset,  # type: ignore[no-untyped-def]
                                                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run, maps = finished_run
    _corrupt(run, tmp_path / "run")
    calls: list[str] = []
    real = harness.run_cell

    def counting(rt, plan):  # type: ignore[no-untyped-def]
        calls.append(plan.config.attack)
        return real(rt, plan)

    monkeypatch.setattr(harness, "run_cell", counting)
    records = run_grid(_spec(tiny_ckpt, tiny_dataset.root.parent), tmp_path / "run", progress=False)
    assert sorted(calls) == ["erasing", "noise"], "only the two bad cells ran again"
    assert {r.cell_id: r.mAP for r in records} == maps, "and gave the numbers of the intact run"
    caches = list((tmp_path / "run" / "cache").glob("gallery-*.safetensors"))
    assert caches and all(not c.read_bytes().startswith(pickle.dumps({"__reduce__": "os.system"})[:8]) for c in caches)


def test_a_full_disk_stops_the_run_with_one_line_and_keeps_finished_cells(tiny_ckpt: Path, tiny_dataset,  # type: ignore[no-untyped-def]
                                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    from reidbench.errors import ReidbenchError
    from reidbench.eval import results

    real_fsync = os.fsync
    writes = {"n": 0}

    def fsync(fd: int) -> None:
        writes["n"] += 1
        if writes["n"] > 4:  # the manifest, the first record and its tables fit; then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(results.os, "fsync", fsync)
    spec = _spec(tiny_ckpt, tiny_dataset.root.parent)
    with pytest.raises(ReidbenchError, match=r"the disk is full while writing .* free some space and re-run"):
        run_grid(spec, tmp_path / "run", progress=False)
    kept = read_records(tmp_path / "run")
    assert len(kept) >= 1, "the cells finished before the disk filled are kept"
    assert not list((tmp_path / "run").rglob(".*.tmp*")), "no temporary file is left behind"
    monkeypatch.setattr(results.os, "fsync", real_fsync)
    records = run_grid(spec, tmp_path / "run", progress=False)
    assert len(records) == 3 and {r.cell_id for r in kept} <= {r.cell_id for r in records}


def test_stale_temporary_files_are_removed_on_resume(finished_run, tiny_ckpt: Path, tiny_dataset,  # type: ignore[no-untyped-def]
                                                     tmp_path: Path) -> None:
    run, _ = finished_run
    shutil.copytree(run, tmp_path / "run")
    stale = tmp_path / "run" / "cells" / ".abc.json.999.tmp"
    stale.write_text("{half")
    run_grid(_spec(tiny_ckpt, tiny_dataset.root.parent), tmp_path / "run", progress=False)
    assert not stale.exists()


def test_a_corrupt_artifact_is_named_not_silently_dropped(finished_run, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from reidbench.reports.run import load_run

    run, _ = finished_run
    shutil.copytree(run, tmp_path / "run")
    art = sorted((tmp_path / "run" / "artifacts").glob("*.npz"))[0]
    art.write_bytes(b"PK\x03\x04 not a zip")
    (tmp_path / "run" / "cells" / "0000bad.json").write_text("{truncated")
    with caplog.at_level("WARNING"):
        data = load_run(tmp_path / "run")
    assert any(art.name in n and "pictures are left out" in n for n in data.notes)
    assert any("0000bad.json" in n for n in data.notes), "a skipped record is named in the report too"
    assert any(art.name in r.getMessage() for r in caplog.records), "and on the console"
    assert len(data.records) == 3 and art.stem not in data.artifacts


def test_resuming_with_other_weights_under_the_same_name_is_refused(finished_run, tiny_ckpt: Path, tiny_dataset,  # type: ignore[no-untyped-def]
                                                                     tmp_path: Path) -> None:
    """A resumed run whose --checkpoint changed would keep the old model's cells as the new one's:
    refused in one line naming the model and the fix; --fresh recomputes everything."""
    import torch

    from reidbench.errors import ReidbenchError
    from reidbench.models.checkpoints import save_checkpoint
    from reidbench.zoo import create_model

    run, maps = finished_run
    shutil.copytree(run, tmp_path / "run")
    other = create_model("baseline", checkpoint=str(tiny_ckpt))
    with torch.no_grad():
        next(other.parameters()).add_(0.5)  # other weights, same architecture and name
    ckpt2 = tmp_path / "other.safetensors"
    save_checkpoint(other, other.card, ckpt2)
    spec = _spec(ckpt2, tiny_dataset.root.parent)
    with pytest.raises(ReidbenchError, match=r"holds 3 cell\(s\) of baseline computed with other weights.*--fresh"):
        run_grid(spec, tmp_path / "run", progress=False)
    assert {r.cell_id: r.mAP for r in read_records(tmp_path / "run")} == maps, "nothing was lost or overwritten"
    fresh = run_grid(spec, tmp_path / "run", fresh=True, progress=False)
    assert len(fresh) == 3 and {r.cell_id: r.mAP for r in fresh} != maps
    # the same weights again resume as before (nothing recomputed, nothing refused)
    again = run_grid(spec, tmp_path / "run", progress=False)
    assert {r.cell_id: r.mAP for r in again} == {r.cell_id: r.mAP for r in fresh}
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", f"baseline={tiny_ckpt}",
                                    "--attack", "noise", "--eps", "8", "--dataset", "synthetic-tiny", "--data-root",
                                    str(tiny_dataset.root.parent), "--batch-size", "16", "--out", str(tmp_path / "run")])  # fmt: skip
    assert res.exit_code != 0 and "computed with other weights" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1, res.output


def test_resuming_mpg_cells_with_another_generator_file_is_refused(tiny_ckpt: Path, tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from reidbench.errors import ReidbenchError
    from reidbench.models.mpg_net import MPGNet, save_generator

    gen = tmp_path / "g.mpg.safetensors"
    save_generator(MPGNet(4), gen, {"name": "mpg", "eps": 5})
    spec = GridSpec(models=["baseline"], attacks=[AttackRequest("mpg", {"generator": str(gen)})],
                    dataset="synthetic-tiny", data_root=tiny_dataset.root.parent,
                    checkpoints={"baseline": str(tiny_ckpt)}, batch_size=16, samples=2)  # fmt: skip
    run_grid(spec, tmp_path / "run", progress=False)
    save_generator(MPGNet(4), gen, {"name": "mpg", "eps": 5, "retrained": True})  # retrained at the same path
    with pytest.raises(ReidbenchError, match=r"mpg cell\(s\) computed with another generator file"):
        run_grid(spec, tmp_path / "run", progress=False)
