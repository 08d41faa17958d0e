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


# --- torchattacks by name, --quiet, lazy imports, doctor -------------------------------------------


def test_list_attacks_and_run_help_mention_torchattacks_names() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["list", "attacks"])
    assert res.exit_code == 0 and "tk:NAME" in res.output, res.output
    res = runner.invoke(main, ["list", "attacks", "tk:*"])
    assert res.exit_code == 0 and "tk:PGD" in res.output and "tk:FGSM" in res.output, res.output
    assert "eps=8, alpha=2, steps=10" in res.output, "torchattacks' defaults, eps/alpha in /255"
    res = runner.invoke(main, ["run", "--help"])
    assert "tk:NAME" in res.output and "tk:PGD" in res.output


def test_torchattacks_attack_by_name_runs_end_to_end(tmp_path: Path, tiny_trained_model) -> None:  # type: ignore[no-untyped-def]
    import pandas as pd

    from reidbench.models.checkpoints import save_checkpoint

    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(tiny_trained_model, tiny_trained_model.card, ckpt)
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", str(ckpt), "--dataset", "synthetic-tiny",
                                    "--attack", "tk:fgsm", "--eps", "4", "--out", str(tmp_path / "r"), "--no-report"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "tk:FGSM" in res.output, "the results table names the canonical class"
    df = pd.read_csv(tmp_path / "r" / "results.csv")
    assert set(df["attack"]) == {"none", "tk:FGSM"}
    row = df[df["attack"] == "tk:FGSM"].iloc[0]
    assert row["eps"] == 4
    clean = df[df["attack"] == "none"].iloc[0]
    assert row["mAP"] <= clean["mAP"], "FGSM at 4/255 does not help the model"


def test_quiet_prints_one_summary_line(tmp_path: Path, tiny_trained_model) -> None:  # type: ignore[no-untyped-def]
    from reidbench.models.checkpoints import save_checkpoint

    ckpt = tmp_path / "m.safetensors"
    save_checkpoint(tiny_trained_model, tiny_trained_model.card, ckpt)
    out = tmp_path / "r"
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", str(ckpt), "--dataset", "synthetic-tiny",
                                    "--attack", "none", "--out", str(out), "--quiet"])  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 1, res.stdout
    assert lines[0].startswith(f"1 cells in {out / 'results.csv'}") and f"report: {out / 'report.pdf'}" in lines[0], lines[0]
    assert "mAP" not in res.stdout, "no results table"


LAZY = """
import sys
from click.testing import CliRunner
import reidbench.cli
from reidbench.cli import main
runner = CliRunner()
for args in (["--help"], ["list", "--help"], ["data", "--help"], *([c, "--help"] for c in main.commands)):
    res = runner.invoke(main, args)
    assert res.exit_code == 0 and "Usage:" in res.output, (args, res.output)
heavy = sorted(m for m in ("torch", "torchvision", "torchattacks", "numpy", "pandas", "matplotlib") if m in sys.modules)
assert not heavy, heavy
"""


def test_help_does_not_import_torch() -> None:
    """`reidbench --help` (and every command's --help) stays fast: no torch, numpy or pandas."""
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", LAZY], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def _doctor_lines(res) -> list[str]:  # type: ignore[no-untyped-def]
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    checks = lines[:-1]
    assert checks and all(ln.split()[0] in ("OK", "WARN", "FAIL") for ln in checks), res.output
    assert all("fix:" in ln for ln in checks if not ln.startswith("OK")), "every problem comes with its fix"
    assert "Traceback" not in res.output
    return checks


def test_doctor_on_a_healthy_setup(tmp_path: Path, tiny_dataset, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    root = _market_copy(tiny_dataset, tmp_path)
    monkeypatch.setenv("REIDBENCH_CACHE", str(tmp_path / "cache"))
    res = CliRunner().invoke(main, ["doctor", "--data-root", str(root)])
    assert res.exit_code == 0, res.output
    checks = _doctor_lines(res)
    names = [ln.split()[1].rstrip(":") for ln in checks]
    for name in ("python", "torch", "torchvision", "torchattacks", "CUDA", "market1501"):
        assert name in names, (name, res.output)
    assert not any(ln.startswith("FAIL") for ln in checks), res.output
    assert any(ln.startswith("OK    checkpoint baseline: baseline.safetensors matches its card") for ln in checks), res.output
    assert any(ln.startswith("OK    market1501:") and "parses" in ln for ln in checks), res.output
    assert sum(ln.startswith("OK    disk") for ln in checks) == 2 or any(ln.startswith("WARN  disk") for ln in checks)


def test_doctor_fails_on_a_corrupted_checkpoint_and_a_broken_layout(tmp_path: Path, tiny_dataset,  # type: ignore[no-untyped-def]
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from reidbench.models import registry

    weights = tmp_path / "weights"
    shutil.copytree(registry.WEIGHTS_DIR, weights)
    victim = weights / "baseline.safetensors"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 0xFF
    victim.write_bytes(bytes(data))
    monkeypatch.setattr(registry, "WEIGHTS_DIR", weights)
    root = _market_copy(tiny_dataset, tmp_path)
    shutil.rmtree(root / "Market-1501-v15.09.15" / "query")
    res = CliRunner().invoke(main, ["doctor", "--data-root", str(root), "--checkpoint", str(victim)])
    assert res.exit_code == 1, res.output
    checks = _doctor_lines(res)
    fails = [ln for ln in checks if ln.startswith("FAIL")]
    assert any(ln.startswith("FAIL  checkpoint baseline: ") and "does not match its card" in ln for ln in fails), res.output
    assert any(ln.startswith(f"FAIL  checkpoint {victim}: ") for ln in fails), "--checkpoint checks that file too"
    assert any(ln.startswith("FAIL  market1501: ") and "missing folder 'query'" in ln for ln in fails), res.output
    assert any(ln.startswith("OK    checkpoint jad: ") for ln in checks), "the intact checkpoints still pass"
    assert res.output.strip().splitlines()[-1].endswith(f"{len(fails)} FAIL")
