"""Two processes on one run directory, or generating one synthetic dataset, are safe: real
processes (subprocess), tiny data."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from filelock import FileLock

from reidbench.cli import main

pytestmark = pytest.mark.slow

# Holds an OS file lock until its stdin closes; says "locked" once it has it.
HOLDER = textwrap.dedent("""
    import sys
    from filelock import FileLock
    lock = FileLock(sys.argv[1])
    lock.acquire()
    print("locked", flush=True)
    sys.stdin.read()
    lock.release()
""")


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)  # the session's REIDBENCH_DATA/REIDBENCH_CACHE (conftest)
    env.pop("REIDBENCH_DEBUG", None)
    env.update(extra)
    return env


def _hold(lock_path: Path) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "locked"
    return p


def _release(p: subprocess.Popen[str]) -> None:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.close()
    p.wait(timeout=30)
    p.stdout.close()


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model: what is measured does not matter here, only who writes it."""
    from reidbench.models.checkpoints import save_checkpoint

    from .conftest import make_tiny_model

    model = make_tiny_model()
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(model, model.card, path)  # type: ignore[arg-type]
    return path


@pytest.fixture(scope="module")
def data_root(tiny_dataset) -> Path:  # type: ignore[no-untyped-def]
    """A data root where synthetic-tiny is already generated, so only the run directory is shared."""
    return Path(tiny_dataset.root).parent


def _run_args(ckpt: Path, root: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--model", "baseline", "--checkpoint", str(ckpt), "--dataset", "synthetic-tiny", "--data-root", str(root),
            "--attack", "fgsm", "--out", str(out), "--quiet", "--no-report", *extra]  # fmt: skip


def test_second_run_on_a_busy_run_dir_refuses_in_one_line(untrained_ckpt: Path, data_root: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    out.mkdir()
    holder = _hold(out / ".reidbench.lock")  # another process is writing the run
    try:
        monkeypatch.setenv("REIDBENCH_LOCK_TIMEOUT", "0.5")
        res = CliRunner().invoke(main, _run_args(untrained_ckpt, data_root, out))
    finally:
        _release(holder)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: another reidbench run is writing"), res.output
    assert "wait for it or use another --out" in lines[0]
    assert not (out / "cells").exists(), "no cell was computed beside the other writer"
    lock = FileLock(out / ".reidbench.lock")
    lock.acquire(timeout=0)  # the refused run does not keep the lock
    lock.release()


def test_two_runs_on_one_run_dir_compute_each_cell_once(untrained_ckpt: Path, data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "reidbench", "-v", *_run_args(untrained_ckpt, data_root, out, "--eps", "1,2,3")]
    env = _env(REIDBENCH_LOCK_TIMEOUT="300")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (stdout, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr
        assert stdout.strip().splitlines() == [f"4 cells in {out / 'results.csv'}"], stdout
    # one process computed the 4 cells; the other waited for it and found them all done
    resumed = ["resuming: 4 of 4 cells already done" in stderr for _, stderr in results]
    assert sorted(resumed) == [False, True], [stderr for _, stderr in results]
    assert len(list((out / "cells").glob("*.json"))) == 4


def test_concurrent_generation_of_one_synthetic_dataset(tmp_path: Path) -> None:
    root = tmp_path / "data"
    cmd = [sys.executable, "-m", "reidbench", "data", "info", "synthetic-tiny", "--data-root", str(root)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_, stderr) in zip(procs, results, strict=True):
        assert p.returncode == 0, stderr
        assert "Traceback" not in stderr and "Error" not in stderr, stderr
    fingerprints = {next(ln for ln in out.splitlines() if ln.startswith("fingerprint")) for out, _ in results}
    assert len(fingerprints) == 1, "both read the same, finished dataset"
    assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == ["synthetic-tiny-v1-seed0"], "no .partial left"


def test_generation_waits_for_the_process_holding_its_lock(tmp_path: Path) -> None:
    """While another process holds the dataset's lock, a reader waits instead of racing it."""
    root = tmp_path / "data"
    root.mkdir()
    holder = _hold(root / ".synthetic-tiny-v1-seed0.lock")
    cmd = [sys.executable, "-m", "reidbench", "data", "info", "synthetic-tiny", "--data-root", str(root)]
    reader = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            reader.wait(timeout=8)  # blocked on the lock (it would take ~5 s to generate otherwise)
        assert not (root / "synthetic-tiny-v1-seed0").exists()
    finally:
        _release(holder)
    stdout, stderr = reader.communicate(timeout=300)
    assert reader.returncode == 0, stderr
    assert "another process is generating synthetic-tiny" in stderr
    assert "fingerprint" in stdout
