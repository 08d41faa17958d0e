"""Bad files a user hands reidbench, each one line and exit 2 (table-driven): an empty checkpoint,
a checkpoint whose classifier is 1-D, a malformed or zero-sized model card beside a checkpoint,
and outputs that cannot be written (root ignores permissions, so /proc and /sys stand in for a
read-only filesystem)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from reidbench.cli import main
from reidbench.models.registry import shipped_checkpoint


def _empty_pt(d: Path) -> Path:
    (d / "empty.pt").write_bytes(b"")
    return d / "empty.pt"


def _one_dim_classifier(d: Path) -> Path:
    sd = load_file(str(shipped_checkpoint("baseline")))
    sd["classifier.weight"] = sd["classifier.weight"][0].contiguous()
    save_file(sd, str(d / "onedim.safetensors"))
    return d / "onedim.safetensors"


def _with_card(d: Path, text: str) -> Path:
    shutil.copy(shipped_checkpoint("baseline"), d / "ck.safetensors")
    (d / "ck.json").write_text(text)
    return d / "ck.safetensors"


def _zero_size_card(d: Path) -> Path:
    card = json.loads(shipped_checkpoint("baseline").with_suffix(".json").read_text())
    card["input_size"] = [0, 0]
    return _with_card(d, json.dumps(card))


CASES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("empty-pt", _empty_pt, "cannot read checkpoint"),
    ("classifier-1d", _one_dim_classifier, "classifier.weight has shape (128,), not (num_classes, feat_dim)"),
    ("card-malformed", lambda d: _with_card(d, '{"name": 3,'), "ck.json is malformed"),
    ("card-zero-size", _zero_size_card, "input_size [0, 0] is not (height, width) in positive pixels"),
]


@pytest.mark.parametrize(("make", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_checkpoint_files_are_one_line(make: Callable[[Path], Path], message: str, tmp_path: Path) -> None:
    ckpt = make(tmp_path)
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", str(ckpt), "--attack", "none",
                                    "--out", str(tmp_path / "run"), "--quiet", "--no-report"])  # fmt: skip
    assert res.exit_code == 2, (res.output, res.exception)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], res.output


@pytest.mark.parametrize("out", ["/proc/reidbench-test/run", "/sys/reidbench-test"])
def test_an_unwritable_out_is_one_line(out: str) -> None:
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--attack", "none", "--out", out, "--quiet",
                                    "--no-report", "--dataset", "synthetic-tiny"])  # fmt: skip
    assert res.exit_code == 2, (res.output, res.exception)
    assert res.output.startswith("Error: cannot create the run directory") and len(res.output.strip().splitlines()) == 1


@pytest.mark.parametrize("golden", ["/proc/nope/golden.json", "/sys/golden.json"])
def test_check_update_into_an_unwritable_place_is_one_line(golden: str, tiny_ckpt: Path, tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    res = runner.invoke(main, ["run", "--model", "baseline", "--checkpoint", str(tiny_ckpt), "--attack", "none",
                               "--dataset", "synthetic-tiny", "--data-root", str(tiny_dataset.root.parent),
                               "--out", str(tmp_path / "run"), "--quiet", "--no-report"])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["check", str(tmp_path / "run"), "--baseline", golden, "--update"])
    assert res.exit_code == 2, (res.output, res.exception)
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: cannot write {golden}"), res.output
