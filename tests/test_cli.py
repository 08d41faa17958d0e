"""The command line as a user types it: help, lists, synthetic data, training, and bad input."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from reidbench.cli import main
from reidbench.data.synthetic import GENERATOR_VERSION, PRESETS, _plan

COMMANDS = [[], ["list"], ["list", "models"], ["list", "attacks"], ["list", "defenses"], ["list", "datasets"],
            ["data"], ["data", "synth"], ["data", "info"], ["train"], ["run"], ["report"], ["check"]]  # fmt: skip


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_every_command_has_help(cmd: list[str]) -> None:
    res = CliRunner().invoke(main, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


@pytest.mark.parametrize(("what", "names"), [
    ("models", ["baseline", "etndnet", "igoas", "jad", "aos", "advtrain"]),
    ("attacks", ["mifgsm", "sma", "fna", "lta", "ifgsm", "fgsm", "erasing", "aos-window", "npo", "fmap-erase", "noise", "pgd"]),
    ("defenses", ["cs", "resize-pad", "jpeg", "median", "bitdepth"]),
    ("datasets", ["market1501", "dukemtmcreid", "occluded_duke", "msmt17", "occluded_reid", "partial_reid", "synthetic-mini"]),
])  # fmt: skip
def test_list_shows_every_registered_name(what: str, names: list[str]) -> None:
    res = CliRunner().invoke(main, ["list", what])
    assert res.exit_code == 0, res.output
    for n in names:
        assert n in res.output


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "synthetic.json":
            h.update(p.relative_to(folder).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_synthetic_data_is_deterministic_and_in_market_layout(tmp_path: Path) -> None:
    runner = CliRunner()
    for out in ("a", "b"):
        res = runner.invoke(main, ["data", "synth", "--preset", "tiny", "--out", str(tmp_path / out)])
        assert res.exit_code == 0, res.output
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b"), "the same seed writes the same files"
    res = runner.invoke(main, ["data", "synth", "--preset", "tiny", "--seed", "1", "--out", str(tmp_path / "c")])
    assert res.exit_code == 0
    assert _digest(tmp_path / "c") != _digest(tmp_path / "a")
    names = sorted(p.name for p in (tmp_path / "a" / "bounding_box_test").iterdir())
    assert any(n.startswith("0000_") for n in names), "distractors in the gallery"
    assert any(n.startswith("-1_") for n in names), "junk boxes, as in Market-1501"
    for n in names[:5]:
        pid, cam = n.split("_")[:2]
        assert cam.startswith("c") and "s1" in cam and n.endswith(".png")
    res = runner.invoke(main, ["data", "synth", "--preset", "tiny", "--out", str(tmp_path / "a")])
    assert res.exit_code == 2 and "not empty" in res.output


def test_synthetic_identities_share_colours_and_cameras_differ() -> None:
    from reidbench.data.synthetic import _camera_params, _identity_params

    rng = np.random.default_rng(0)
    ident = _identity_params(rng, 200)
    combos = set(zip(ident["upper"].tolist(), ident["lower"].tolist(), strict=True))
    assert len(combos) < 200, "different identities share upper and lower clothing colours"
    cams = _camera_params(rng, 6)
    assert len({tuple(np.round(g, 3)) for g in cams["gain"]}) == 6, "each camera has its own colour cast"


@pytest.mark.parametrize(("preset", "train_ids", "train", "query", "gallery"), [
    ("market", 751, 12936, 3368, 15913),
    ("occluded", 702, 15618, 2210, 17661),
])  # fmt: skip
def test_large_presets_have_the_real_datasets_counts(preset: str, train_ids: int, train: int, query: int, gallery: int) -> None:
    p = PRESETS[preset]
    plans, _ = _plan(p, np.random.default_rng([p.seed, GENERATOR_VERSION]))
    tr, q, g = plans
    assert (len(set(tr.pids.tolist())), len(tr.pids), len(q.pids), len(g.pids)) == (train_ids, train, query, gallery)
    assert (p.height, p.width) == (256, 128)
    if preset == "occluded":
        assert q.occlude.mean() > 0.8 and not tr.occlude.any(), "occluded queries, holistic training images"


def test_train_then_run_through_the_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    ckpt = tmp_path / "b.safetensors"
    res = runner.invoke(main, ["train", "--model", "baseline", "--dataset", "synthetic-tiny", "--backbone", "resnet_test",
                               "--epochs", "1", "--out", str(ckpt)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert ckpt.is_file() and ckpt.with_suffix(".json").is_file()
    res = runner.invoke(main, ["run", "--model", "baseline", "--checkpoint", str(ckpt), "--dataset", "synthetic-tiny",
                               "--attack", "none", "--out", str(tmp_path / "run"), "--quiet", "--no-report"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "results.csv").is_file()


def _one_line_error(res) -> str:  # type: ignore[no-untyped-def]
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    assert "Traceback" not in res.output
    return lines[0]


def _market_copy(tiny_dataset, tmp_path: Path) -> Path:  # type: ignore[no-untyped-def]
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset.root, root / "Market-1501-v15.09.15")
    return root


def test_corrupt_image_is_one_line_naming_the_file(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = _market_copy(tiny_dataset, tmp_path)
    victim = sorted((root / "Market-1501-v15.09.15" / "query").iterdir())[0]
    victim.write_bytes(b"not a png at all")
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--dataset", "market1501", "--data-root", str(root),
                                    "--attack", "none", "--out", str(tmp_path / "r"), "--quiet", "--no-report"])  # fmt: skip
    line = _one_line_error(res)
    assert victim.name in line and "corrupt" in line


def test_malformed_file_name_is_one_line(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = _market_copy(tiny_dataset, tmp_path)
    src = sorted((root / "Market-1501-v15.09.15" / "query").iterdir())[0]
    src.rename(src.with_name("person_one.png"))
    res = CliRunner().invoke(main, ["data", "info", "market1501", "--data-root", str(root)])
    line = _one_line_error(res)
    assert "person_one.png" in line


def test_missing_dataset_folder_is_one_line(tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = _market_copy(tiny_dataset, tmp_path)
    shutil.rmtree(root / "Market-1501-v15.09.15" / "query")
    line = _one_line_error(CliRunner().invoke(main, ["data", "info", "market1501", "--data-root", str(root)]))
    assert "missing folder 'query'" in line


def test_mismatched_checkpoint_is_one_line(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from .conftest import make_tiny_model

    state = make_tiny_model(backbone="resnet_tiny").state_dict()  # the registered architecture
    state.pop("classifier.weight")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "x.safetensors"))
    line = _one_line_error(CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", str(tmp_path / "x.safetensors"),
                                                     "--attack", "none", "--out", str(tmp_path / "r"), "--quiet"]))  # fmt: skip
    assert "missing keys: classifier.weight" in line


def test_unknown_attack_in_list_is_one_line() -> None:
    line = _one_line_error(CliRunner().invoke(main, ["run", "--attack", "mifsgm", "--quiet"]))
    assert "unknown attack 'mifsgm'" in line and "mifgsm" in line


def test_amp_on_cpu_is_refused_not_silently_ignored(tmp_path: Path) -> None:
    line = _one_line_error(CliRunner().invoke(main, ["run", "--model", "baseline", "--attack", "none", "--amp", "--device", "cpu",
                                                     "--out", str(tmp_path / "r"), "--quiet"]))  # fmt: skip
    assert "--amp" in line and "cuda" in line
    assert not (tmp_path / "r").exists(), "nothing is written for a refused run"


def test_quiet_silences_every_progress_bar(tmp_path: Path, tiny_trained_model) -> None:  # type: ignore[no-untyped-def]
    """Even the data generation's bar, which starts deep inside the dataset loader."""
    from reidbench.models.checkpoints import save_checkpoint

    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(tiny_trained_model, tiny_trained_model.card, ckpt)
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", str(ckpt), "--dataset", "synthetic-tiny",
                                    "--data-root", str(tmp_path / "fresh-data"), "--attack", "none", "--attack", "sma",
                                    "--steps", "2", "--out", str(tmp_path / "r"), "--quiet", "--no-report"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "fresh-data").is_dir(), "the data was generated in this run"
    assert "img/s" not in res.output and "%|" not in res.output, res.output


@pytest.mark.parametrize("flag, expected", [(None, {"none", "fgsm"}), ("--no-clean", {"fgsm"})])
def test_every_grid_gets_its_clean_reference_cell(tmp_path: Path, tiny_trained_model, flag, expected) -> None:  # type: ignore[no-untyped-def]
    """Drops are measured from the clean cell, so a grid of attacks alone still evaluates it."""
    import pandas as pd

    from reidbench.models.checkpoints import save_checkpoint

    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(tiny_trained_model, tiny_trained_model.card, ckpt)
    args = ["run", "--model", "baseline", "--checkpoint", str(ckpt), "--dataset", "synthetic-tiny", "--attack", "fgsm",
            "--out", str(tmp_path / "r"), "--quiet", "--no-report"]  # fmt: skip
    res = CliRunner().invoke(main, args + ([flag] if flag else []))
    assert res.exit_code == 0, res.output
    assert set(pd.read_csv(tmp_path / "r" / "results.csv")["attack"]) == expected
