"""The harness: grid expansion, resume after an interruption, records, and `reidbench run`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from reidbench.cli import main
from reidbench.eval import harness
from reidbench.eval.harness import AttackRequest, GridSpec, run_grid
from reidbench.eval.results import read_records


def _spec(ckpt: Path, data_root: Path, **kw) -> GridSpec:  # type: ignore[no-untyped-def]
    attacks = kw.pop("attacks", [AttackRequest("none"), AttackRequest("noise", {"eps": 8}),
                                 AttackRequest("sma", {"steps": 3}), AttackRequest("erasing", {"area": 0.3})])
    kw.setdefault("batch_size", 16)
    return GridSpec(models=["baseline"], attacks=attacks, dataset="synthetic-tiny", data_root=data_root,
                    checkpoints={"baseline": str(ckpt)}, samples=2, **kw)  # fmt: skip


def _numbers(run_dir: Path) -> dict[str, tuple[float, ...]]:
    return {r.cell_id: (r.rank1, r.rank5, r.rank10, r.mAP, r.mINP) for r in read_records(run_dir)}


def test_grid_records_threat_models_and_tables(tiny_ckpt: Path, tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tiny_dataset.root.parent
    records = run_grid(_spec(tiny_ckpt, root), tmp_path / "run", progress=False)
    assert [r.config.attack for r in records] == ["none", "noise", "sma", "erasing"]
    clean, noise, sma, erasing = records
    assert clean.family == "clean" and clean.config.target == "none"
    assert sma.config.target == "query" and "query images attacked" in sma.threat and "eps=5" in sma.threat
    assert noise.config.eps == 8 and erasing.config.area == 0.3
    assert sma.mAP <= clean.mAP + 1e-6, "an attack must not raise mAP"
    assert all(0 <= r.mAP <= 100 and r.n_query == len(tiny_dataset.query) for r in records)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["dataset"]["fingerprint"] == tiny_dataset.fingerprint
    assert manifest["models"]["baseline"]["sha256"] and manifest["versions"]["torch"] == torch.__version__
    # results.csv is the records, row for row
    import pandas as pd

    df = pd.read_csv(tmp_path / "run" / "results.csv")
    by_id = {r.cell_id: r for r in records}
    assert set(df.cell_id) == set(by_id)
    for row in df.itertuples():
        assert row.mAP == pytest.approx(by_id[row.cell_id].mAP) and row.rank1 == pytest.approx(by_id[row.cell_id].rank1)
    assert (tmp_path / "run" / "artifacts").is_dir() and any((tmp_path / "run" / "artifacts").iterdir())


def test_interrupted_run_resumes_without_losing_or_repeating_cells(tiny_ckpt: Path, tiny_dataset, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    root = tiny_dataset.root.parent
    reference = run_grid(_spec(tiny_ckpt, root), tmp_path / "ref", progress=False)
    calls: list[str] = []
    interrupt_at = [3]
    real = harness.run_cell

    def counting(rt, plan):  # type: ignore[no-untyped-def]
        calls.append(plan.config.cell_id)
        if len(calls) == interrupt_at[0]:
            interrupt_at[0] = -1
            raise KeyboardInterrupt  # the user presses Ctrl-C during the third cell
        return real(rt, plan)

    monkeypatch.setattr(harness, "run_cell", counting)
    with pytest.raises(KeyboardInterrupt):
        run_grid(_spec(tiny_ckpt, root), tmp_path / "run", progress=False)
    assert len(read_records(tmp_path / "run")) == 2, "the two finished cells were saved"
    calls.clear()
    resumed = run_grid(_spec(tiny_ckpt, root), tmp_path / "run", progress=False)
    assert len(calls) == 2, "only the two missing cells ran again"
    assert len(set(calls)) == 2 and not set(calls) & {r.cell_id for r in resumed[:2]}
    assert _numbers(tmp_path / "run") == _numbers(tmp_path / "ref")
    assert [r.cell_id for r in resumed] == [r.cell_id for r in reference]
    calls.clear()
    run_grid(_spec(tiny_ckpt, root), tmp_path / "run", progress=False)
    assert calls == [], "a finished run computes nothing"
    calls.clear()
    run_grid(_spec(tiny_ckpt, root), tmp_path / "run", progress=False, fresh=True)
    assert len(calls) == 4, "--fresh starts over"


@pytest.mark.slow
def test_killed_process_resumes_to_identical_results(tiny_ckpt: Path, tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A real SIGKILL in the middle of `reidbench run`, then the same command again."""
    root = tiny_dataset.root.parent
    args = [sys.executable, "-m", "reidbench.cli", "run", "--model", "baseline", "--checkpoint", str(tiny_ckpt),
            "--dataset", "synthetic-tiny", "--data-root", str(root), "--attack", "none", "--attack", "sma",
            "--attack", "noise", "--attack", "erasing", "--attack", "lta", "--steps", "3", "--batch-size", "8",
            "--quiet", "--no-report"]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = subprocess.run([*args, "--out", str(tmp_path / "ref")], env=env, capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    proc = subprocess.Popen([*args, "--out", str(tmp_path / "run")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cells = tmp_path / "run" / "cells"
    deadline = time.time() + 300
    while time.time() < deadline and (not cells.is_dir() or len(list(cells.glob("*.json"))) < 2):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(list(cells.glob("*.json")))
    assert 2 <= n_before < 5, "killed in the middle"
    again = subprocess.run([*args, "--out", str(tmp_path / "run")], env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert _numbers(tmp_path / "run") == _numbers(tmp_path / "ref")


def test_cli_run_prints_the_table_and_writes_results(tiny_ckpt: Path, tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tiny_dataset.root.parent
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", str(tiny_ckpt), "--dataset",
                                    "synthetic-tiny", "--data-root", str(root), "--attack", "none", "--attack",
                                    "noise", "--eps", "2,8", "--out", str(tmp_path / "r"), "--no-report"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "mAP" in res.output and "noise" in res.output
    rows = read_records(tmp_path / "r")
    assert sorted(r.config.eps or 0 for r in rows) == [0, 2, 8]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--attack", "nope"], "unknown attack 'nope'"),
        (["--attack", "sma", "--eps", "500"], "eps"),
        (["--attack", "none", "--area", "0.3"], "no attack in this run takes --area"),
        (["--dataset", "market1501", "--data-root", "/nonexistent-reidbench"], "Market-1501 layout not found"),
    ],
)
def test_cli_run_bad_input_is_one_line(args: list[str], message: str, tiny_ckpt: Path, tmp_path: Path) -> None:
    base = ["run", "--out", str(tmp_path / "r"), "--quiet", "--no-report"]
    if "--model" not in args:
        base += ["--model", "baseline", "--checkpoint", str(tiny_ckpt), "--dataset", "synthetic-tiny"]
    res = CliRunner().invoke(main, base + args)
    assert res.exit_code == 2, res.output
    err = res.output.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error:") and message in err[0], res.output
    assert "Traceback" not in res.output


def test_an_oblivious_cell_reuses_the_undefended_cells_images_with_identical_results(
        tiny_ckpt: Path, tiny_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """An oblivious cell crafts on the bare network, as the undefended cell of the same attack
    does: the grid crafts once, and every number equals that of a run that crafts each alone."""
    from reidbench.eval import cell

    root = tiny_dataset.root.parent
    attacks = [AttackRequest("mifgsm", {"steps": 2}), AttackRequest("aos-window", {"area": 0.3})]
    crafts: list[str] = []
    real = cell.attack_images

    def counting(atk, images, labels, rt, desc, **kw):  # type: ignore[no-untyped-def]
        crafts.append(desc)
        return real(atk, images, labels, rt, desc, **kw)

    monkeypatch.setattr(cell, "attack_images", counting)
    both = run_grid(_spec(tiny_ckpt, root, attacks=attacks, defenses=["median", "none"]), tmp_path / "both",
                    progress=False)  # fmt: skip
    cells = {(r.config.defense, r.config.mode, r.config.attack): r for r in both}
    assert set(cells) >= {("median", "oblivious", "mifgsm"), ("none", "none", "mifgsm"),
                          ("median", "adaptive", "mifgsm"), ("median", "oblivious", "aos-window")}
    # median: oblivious + adaptive per attack; none: one per attack; the oblivious ones are reused
    assert len(crafts) == 2 * 2 + 2 - 2, crafts
    alone = {}
    for defense, mode in (("median", "oblivious"), ("none", "none")):
        for req in attacks:
            rec = run_grid(_spec(tiny_ckpt, root, attacks=[req], defenses=[defense], modes=["oblivious"]),
                           tmp_path / f"{defense}-{req.name}", progress=False)[-1]  # fmt: skip
            alone[(defense, mode, req.name)] = rec
    for key, rec in alone.items():
        got = cells[key]
        assert (got.rank1, got.mAP, got.mINP, got.extra.get("linf_max")) == (rec.rank1, rec.mAP, rec.mINP,
                                                                                rec.extra.get("linf_max")), key


def _oom_above(limit: int):  # type: ignore[no-untyped-def]
    """A wrapper raising CUDA's out-of-memory error for batches above ``limit`` images."""
    def wrap(fn):  # type: ignore[no-untyped-def]
        def inner(self, x, *a, **kw):  # type: ignore[no-untyped-def]
            if x.shape[0] > limit:
                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {x.shape[0]} images")
            return fn(self, x, *a, **kw)
        return inner
    return wrap


def test_out_of_device_memory_halves_the_batch_with_identical_results(
        tiny_ckpt: Path, tiny_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """At the default batch size a device that runs out of memory gets the same cells, batch by
    smaller batch: attacks (with their gradient telemetry) and feature extraction."""
    from reidbench.attacks.mifgsm import MIFGSM
    from reidbench.models.base import ReIDModel

    root = tiny_dataset.root.parent
    attacks = [AttackRequest("none"), AttackRequest("mifgsm", {"steps": 2}), AttackRequest("aos-window", {"area": 0.3})]
    small = run_grid(_spec(tiny_ckpt, root, attacks=attacks, batch_size=4), tmp_path / "small", progress=False)
    monkeypatch.setattr(MIFGSM, "forward", _oom_above(5)(MIFGSM.forward))
    monkeypatch.setattr(ReIDModel, "forward", _oom_above(8)(ReIDModel.forward))  # extraction and AOS windows
    spec = _spec(tiny_ckpt, root, attacks=attacks, batch_size=None)  # the default: 128 on CPU
    with caplog.at_level("WARNING"):
        fitted = run_grid(spec, tmp_path / "fitted", progress=False)
    assert "ran out of memory extracting features at batch size 128; continuing with 64" in caplog.text
    assert "ran out of memory crafting mifgsm query" in caplog.text
    for a, b in zip(small, fitted, strict=True):
        assert (a.rank1, a.mAP, a.mINP) == (b.rank1, b.mAP, b.mINP), a.config.attack
        assert a.extra.get("grad_zero_frac") == b.extra.get("grad_zero_frac")
        assert a.extra.get("grad_steps") == b.extra.get("grad_steps")
    assert fitted[-1].extra["batch_size"] <= 4
    # a batch size the user chose is not second-guessed: one line naming the option
    from reidbench.errors import ReidbenchError

    with pytest.raises(ReidbenchError, match=r"ran out of memory extracting features at --batch-size 16; pass a smaller"):
        run_grid(_spec(tiny_ckpt, root, attacks=attacks, batch_size=16), tmp_path / "fixed", progress=False)
