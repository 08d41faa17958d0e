"""`--threads` and `--memory-budget`: the thread count chosen, restored, recorded; the budget
reaches the evaluation; neither changes a number."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from click.testing import CliRunner

import reidbench.cli.run_cmd as run_cmd
import reidbench.eval.metrics as metrics
from reidbench.cli import main
from reidbench.errors import ParameterError


def test_thread_count_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert run_cmd.thread_count("1") == 1
    assert run_cmd.thread_count(" 3 ") == 3
    assert run_cmd.thread_count(2) == 2
    for bad in ("0", "-2", "two", "1.5", "", "99999"):
        with pytest.raises(ParameterError) as info:
            run_cmd.thread_count(bad)
        assert str(info.value).startswith("--threads must be a whole number") and "\n" not in str(info.value)


def test_auto_leaves_the_busy_cores_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(run_cmd, "usable_cpus", lambda: 8)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(8)  # torch's own default on an 8-core machine
        monkeypatch.setattr(run_cmd, "busy_cpus", lambda: 2.6)
        assert run_cmd.thread_count(None) == run_cmd.thread_count("auto") == 5  # 3 cores busy
        monkeypatch.setattr(run_cmd, "busy_cpus", lambda: 30.0)
        assert run_cmd.thread_count(None) == 1  # overloaded: one thread, never zero
        monkeypatch.setattr(run_cmd, "busy_cpus", lambda: 0.0)
        torch.set_num_threads(4)  # fewer physical cores than CPUs (or OMP_NUM_THREADS=4)
        assert run_cmd.thread_count(None) == 4
        monkeypatch.setenv("OMP_NUM_THREADS", "3")
        assert run_cmd.thread_count(None) is None  # the user's choice is kept
        assert run_cmd.thread_count("auto") is None
        assert run_cmd.thread_count("2") == 2  # a number overrides it
    finally:
        torch.set_num_threads(before)


def test_cpu_threads_is_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    with run_cmd.cpu_threads("1") as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), run_cmd.cpu_threads("1"):
        raise RuntimeError("a failing run")
    assert torch.get_num_threads() == before


def test_usable_cpus_is_positive() -> None:
    assert 1 <= run_cmd.usable_cpus() <= (__import__("os").cpu_count() or 1)


def _run(tmp_path: Path, tiny_ckpt: Path, name: str, *extra: str) -> tuple[pd.DataFrame, dict]:
    out = tmp_path / name
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", str(tiny_ckpt), "--dataset",
                                    "synthetic-tiny", "--attack", "fgsm", "--out", str(out), "--quiet",
                                    "--no-report", *extra])  # fmt: skip
    assert res.exit_code == 0, res.output
    return pd.read_csv(out / "results.csv"), json.loads((out / "manifest.json").read_text())


def test_threads_and_budget_reach_the_run_and_change_no_number(
    tmp_path: Path, tiny_ckpt: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []
    real = metrics.evaluate_features

    def spy(*args, **kwargs):
        seen.append(kwargs.get("memory_budget"))
        return real(*args, **kwargs)

    monkeypatch.setattr("reidbench.eval.cell.rank_features", spy)
    before = torch.get_num_threads()
    base, base_manifest = _run(tmp_path, tiny_ckpt, "a", "--threads", "2")
    assert base_manifest["threads"] == 2 and base_manifest["config"]["memory_budget"] is None
    small, manifest = _run(tmp_path, tiny_ckpt, "b", "--threads", "1", "--memory-budget", "1MiB")
    assert manifest["threads"] == 1 and manifest["config"]["memory_budget"] == 1 << 20
    assert torch.get_num_threads() == before  # the command left the process as it found it
    assert seen and seen[0] is None and set(seen[len(seen) // 2 :]) == {1 << 20}
    cols = ["cell_id", "rank1", "rank5", "rank10", "mAP", "mINP", "n_valid_query"]
    pd.testing.assert_frame_equal(base[cols], small[cols])


@pytest.mark.parametrize(
    ("flag", "message"),
    [(["--threads", "0"], "--threads must be a whole number"),
     (["--memory-budget", "lots"], "--memory-budget must be a number of bytes")],
)  # fmt: skip
def test_bad_values_are_one_line(tmp_path: Path, flag: list[str], message: str) -> None:
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--attack", "none", "--dataset", "synthetic-tiny",
                                    "--out", str(tmp_path / "r"), *flag])  # fmt: skip
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.output


def test_busy_cpus_reads_what_runs_now() -> None:
    """An idle machine reads near 0 and one spinning thread near 1, within the 0.3 s window
    (the 1-minute load average would still remember earlier work)."""
    import threading
    import time

    stop = time.monotonic() + 1.5

    def spin() -> None:
        while time.monotonic() < stop:
            pass

    idle = run_cmd.busy_cpus()
    t = threading.Thread(target=spin)
    t.start()
    try:
        busy = run_cmd.busy_cpus()
    finally:
        t.join()
    assert busy >= idle + 0.5, (idle, busy)
