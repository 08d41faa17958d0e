"""The benchmarks keep running, and the attacks keep returning what the previous release returns.

``benchmarks/bench_attacks.py`` runs each attack in this release and in the previous release
(0.1.0, extracted from the repository's history into a cache and run in a worker process) on the
same weights, images and context; it flags any difference. A tiny run of it here is a regression
test of the attacks' results against 0.1.0, not only a smoke test.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def env(tmp_path: Path) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "REIDBENCH_DATA": str(tmp_path / "data"),
            "XDG_CACHE_HOME": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}  # fmt: skip


def test_bench_attacks_matches_the_previous_release(tmp_path: Path, env: dict[str, str]) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_attacks.py"), "--images", "4", "--naive-images", "1",
         "--steps", "2", "--repeat", "1", "--threads", "1", "--attacks", "mifgsm,sma,lta,aos-window"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env={**env, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert re.search(r"matmul peak [\d.]+ GFLOP/s", out), out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in
            ("mifgsm", "sma", "lta", "aos-window")}  # fmt: skip
    assert set(rows) == {"mifgsm", "sma", "lta", "aos-window"}, out
    for line in rows.values():
        assert re.search(r"\d+%", line), line  # a fraction of the matmul peak
    if "previous release: skipped" in out:  # a clone without the history (git archive failed)
        pytest.skip("the previous release could not be extracted: " + out.splitlines()[1])
    for name, line in rows.items():
        assert "DIFFERENT" not in line, f"{name} no longer returns 0.1.0's images: {line}"
        cols = line.split()
        assert re.fullmatch(r"[\d.]+x", cols[5]), line  # the previous release's ratio was measured


def test_release_worker_imports_the_tree_it_is_given(tmp_path: Path, env: dict[str, str]) -> None:
    """The worker must import the release in PYTHONPATH, not an installed (editable) copy."""
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "release_worker.py"), "names"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120, env={**env, "PYTHONPATH": str(ROOT)})  # fmt: skip
    assert res.returncode == 0, res.stderr
    import json

    got = json.loads(res.stdout.strip().splitlines()[-1])
    assert Path(got["file"]).resolve().is_relative_to(ROOT)
    assert {"mifgsm", "ntp", "mpg"} <= set(got["attacks"])
