"""--model module:factory runs the user's code: whatever it does wrong becomes one line naming the
factory, never a traceback and never an exit 0 with nothing written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from reidbench.cli import main

GOOD_NET = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, out=None):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.out = out
        self.input_size = (64, 32)

    def forward(self, x):
        f = self.conv(x).mean(dim=(2, 3))
        return self.out(f) if self.out is not None else f
"""

CASES = [
    ("raises", "def make():\n    raise ValueError('no weights here')\n", "the factory raised ValueError: no weights here"),
    ("needs_args", "def make(path):\n    return Net()\n", "the factory must take no arguments"),
    ("not_callable", "make = 3\n", "make is a int, not a function returning a model"),
    ("syntax", "def make(:\n", "importing user_syntax failed with SyntaxError"),
    ("exits", "import sys\ndef make():\n    sys.exit(0)\n", "the factory raised SystemExit"),
    ("tuple", "def make():\n    return (Net(), 1)\n", "the factory returned tuple, not a torch.nn.Module"),
    ("scalar", "def make():\n    return Net(out=lambda f: f.sum())\n", "returned a torch.float32 tensor of shape ()"),
    ("integer", "def make():\n    return Net(out=lambda f: (f * 100).long())\n", "returned a torch.int64 tensor of shape (2, 8)"),
    ("size", "def make():\n    n = Net()\n    n.input_size = '64x32'\n    return n\n", "input_size is '64x32'"),
    ("forward_raises", "def make():\n    return Net(out=lambda f: f.view(-1, 7))\n", "the model raised RuntimeError"),
    ("missing", "", "user_missing has no 'make'"),
]


@pytest.mark.parametrize(("name", "body", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_user_code_is_one_line(name: str, body: str, message: str, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    module = f"user_{name}"
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(GOOD_NET) + "\n" + body)
    monkeypatch.chdir(tmp_path)  # the current folder is importable, as a user expects
    res = CliRunner().invoke(main, ["run", "--model", f"{module}:make", "--attack", "none", "--dataset",
                                    "synthetic-tiny", "--out", str(tmp_path / "run"), "--quiet", "--no-report"])  # fmt: skip
    assert res.exit_code == 2, (res.output, res.exception)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], res.output
    assert f"{module}:make" in lines[0]


def test_a_good_factory_in_the_current_folder_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_good.py").write_text(textwrap.dedent(GOOD_NET) + "\ndef make():\n    return Net()\n")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["run", "--model", "user_good:make", "--attack", "none", "--dataset", "synthetic-tiny",
                                    "--out", str(tmp_path / "run"), "--quiet", "--no-report"])  # fmt: skip
    assert res.exit_code == 0, (res.output, res.exception)
    assert (tmp_path / "run" / "results.csv").is_file()
