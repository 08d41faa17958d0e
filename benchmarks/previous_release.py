"""The previous release, installed side by side for the benchmarks that compare against it.

The previous release is 0.1.0 as it stood at its last commit (``PREVIOUS_RELEASE``, 2026-11-21,
the "0.1.0" section of CHANGES.md): the state whose speed issue 15 measured. Its source is
taken from this repository's history (``git archive``) into a cache folder and run from there
with ``PYTHONPATH`` in a subprocess, so the two releases never share a Python process. It needs
the same dependencies as this one, which the environment already has.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PREVIOUS_RELEASE = "3d9fa950d33f86b660f69feb38251e8eba7a9779"
REPO = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "release_worker.py"


class Unavailable(Exception):
    """The previous release cannot be set up here (no git, or a clone without that commit)."""


def release_tree(rev: str = PREVIOUS_RELEASE) -> Path:
    """A source tree of ``rev`` (extracted once into ``~/.cache/reidbench/bench-previous``)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reidbench" / "bench-previous"
    tree = cache / rev
    if (tree / "reidbench" / "__init__.py").exists():
        return tree
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(suffix=".tar", dir=cache) as tar:
        try:
            subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", rev, "reidbench"], stdout=tar,
                           stderr=subprocess.PIPE, check=True)  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as e:
            err = getattr(e, "stderr", b"") or b""
            raise Unavailable(f"cannot extract the previous release {rev[:10]} with git archive "
                              f"({err.decode(errors='replace').strip() or e}); run from a full clone") from None  # fmt: skip
        tmp = Path(tempfile.mkdtemp(dir=cache))
        with tarfile.open(tar.name) as t:
            t.extractall(tmp, filter="data")
        tmp.rename(tree)
    return tree


def worker(tree: Path, *args: str, **kw: object) -> subprocess.Popen[str]:
    """Start ``release_worker.py ARGS`` with ``tree`` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.Popen([sys.executable, str(WORKER), *args], env=env, text=True, cwd=str(tree), **kw)  # type: ignore[call-overload]
