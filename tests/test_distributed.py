"""torchrun: two gloo processes on CPU give exactly the numbers of one process, resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidbench.errors import ParameterError
from reidbench.eval.distributed import check_work, shard

TORCHRUN = Path(sys.executable).with_name("torchrun")
# clean, noise, sma (3 steps), erasing and a feature-map attack; batch 8 gives 4 query batches
GRID = ["--model", "baseline", "--attack", "noise", "--attack", "sma", "--attack", "erasing", "--attack", "fmap-erase",
        "--steps", "3", "--batch-size", "8", "--device", "cpu", "--no-report", "--quiet"]  # fmt: skip
SKIP = {"seconds", "x_ranks", "x_attack_images_per_s"}  # wall time and speed, and the ranks that computed the row (only under torchrun)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return env


def _args(ckpt: Path, dataset, out: Path) -> list[str]:  # type: ignore[no-untyped-def]
    return ["run", *GRID, "--checkpoint", str(ckpt), "--dataset", "synthetic-tiny",
            "--data-root", str(dataset.root.parent), "--out", str(out)]  # fmt: skip


def _torchrun(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess[str]:
    cmd = [str(TORCHRUN), "--nproc_per_node", str(nproc), "--standalone", "-m", "reidbench.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=600)


def _single(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reidbench.cli", *args], capture_output=True, text=True, env=_env(),
                          timeout=600)  # fmt: skip


def _rows(run: Path) -> dict[str, dict[str, str]]:
    import csv

    with open(run / "results.csv", newline="") as f:
        return {r["cell_id"]: {k: v for k, v in r.items() if k not in SKIP} for r in csv.DictReader(f)}


def _ok(p: subprocess.CompletedProcess[str]) -> None:
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]


def test_shards_are_whole_batches_covering_every_row() -> None:
    for n, b, w in [(32, 8, 2), (33, 8, 2), (7, 8, 2), (100, 16, 3), (0, 8, 2), (5, 1, 4)]:
        parts = [shard(n, b, r, w) for r in range(w)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == c[0] for a, c in zip(parts, parts[1:], strict=False)), parts
        assert all(lo % b == 0 or lo == n for lo, _ in parts)
    assert shard(32, 8, 0, 2) == (0, 16) and shard(32, 8, 1, 2) == (16, 32)


def test_more_ranks_than_queries_is_one_line() -> None:
    with pytest.raises(ParameterError, match=r"torchrun started 40 processes but synthetic-tiny has only 32 query images"):
        check_work(40, 32, "synthetic-tiny")
    check_work(2, 32, "synthetic-tiny")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_torchrun_cuda_without_cuda_is_one_line(tmp_path: Path) -> None:
    env = _env() | {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    p = subprocess.run([sys.executable, "-m", "reidbench.cli", "run", "--model", "baseline", "--device", "cuda",
                        "--out", str(tmp_path / "r")], capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "CUDA is not available" in lines[0] and "torchrun (rank 1 of 2)" in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_two_gloo_ranks_equal_one_process_and_resume(tiny_ckpt: Path, tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    one, two = tmp_path / "one", tmp_path / "two"
    _ok(_single(_args(tiny_ckpt, tiny_dataset, one)))
    p = _torchrun(_args(tiny_ckpt, tiny_dataset, two))
    _ok(p)
    a, b = _rows(one), _rows(two)
    assert len(a) == 5 and set(a) == set(b)
    for cell in a:
        assert a[cell] == b[cell], (cell, {k: (a[cell][k], b[cell].get(k)) for k in a[cell] if a[cell][k] != b[cell].get(k)})
    # the rows say which ranks computed them; the manifest says how many there were
    recs = [json.loads(f.read_text()) for f in sorted((two / "cells").glob("*.json"))]
    assert recs and all(r["extra"]["ranks"] == [0, 1] for r in recs)
    assert json.loads((two / "manifest.json").read_text())["world_size"] == 2
    assert json.loads((one / "manifest.json").read_text())["world_size"] == 1
    # rank 0 alone printed the summary
    assert p.stdout.count("cells in") == 1, p.stdout
    # resume under torchrun: only the deleted cell is computed again
    victim = sorted((two / "cells").glob("*.json"))[2]
    kept = {f.name: f.stat().st_mtime_ns for f in (two / "cells").glob("*.json") if f != victim}
    victim.unlink()
    _ok(_torchrun(_args(tiny_ckpt, tiny_dataset, two)))
    assert victim.is_file()
    assert {f.name: f.stat().st_mtime_ns for f in (two / "cells").glob("*.json") if f != victim} == kept
    assert _rows(two) == a
    manifest = json.loads((two / "manifest.json").read_text())
    assert len(manifest["invocations"]) == 2 and manifest["world_size"] == 2
