"""The APD-like model and the MPG attack: the generator's budget, its loss, SSD, the recipe's three
stages, the generator file beside the checkpoint, the attack's one-line errors and weights-only
loading."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from torch.nn import functional as F

from reidbench.attack_types import Access, Budget
from reidbench.attacks import ATTACKS, create_attack
from reidbench.cli import main
from reidbench.data import ReIDDataset, relabel
from reidbench.data.images import load_images
from reidbench.errors import CheckpointError, ParameterError
from reidbench.models import MODELS, ReIDModel, mpg_net
from reidbench.models.checkpoints import save_checkpoint
from reidbench.models.mpg_net import MPGNet, load_generator, save_generator
from reidbench.models.registry import build_model
from reidbench.train.recipes.apd import (
    APDRecipe,
    generator_losses,
    identity_centres,
    self_perturbation,
    ssd_loss,
    ssim,
)
from reidbench.train.trainer import TrainConfig, train

from .conftest import TinySplit, make_tiny_model

EPS = 5 / 255


def _one_line_error(res: Any) -> str:
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    assert "Traceback" not in res.output
    return lines[0]


def _saturating(width: int = 4, seed: int = 0) -> MPGNet:
    """A random generator whose output layer is scaled up, so tanh saturates at +-1: the bound is
    then tested where it binds, not where a small random output would pass any check."""
    torch.manual_seed(seed)
    net = MPGNet(width)
    assert net.out.bias is not None
    with torch.no_grad():
        net.out.weight.mul_(100.0)
        net.out.bias.mul_(100.0)
    return net.eval()


@pytest.fixture(scope="module")
def generator_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gen") / "g.mpg.safetensors"
    save_generator(_saturating(), path, {"name": "mpg", "eps": 5, "surrogate": {"model": "none (random weights)"}})
    return path


def _images(n: int = 6, h: int = 64, w: int = 32) -> torch.Tensor:
    torch.manual_seed(1)
    x = torch.rand(n, 3, h, w)
    x[0] = 0.0  # the clamp to [0,1] binds on these two
    x[1] = 1.0
    return x


# ---------------------------------------------------------------------------------------------
# MPG-Net and the mpg attack: the budget
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1 / 255, 5 / 255, 16 / 255])
def test_random_generator_output_stays_within_eps(eps: float) -> None:
    net = _saturating()
    x = _images()
    with torch.no_grad():
        delta = net(x, eps)
    assert delta.shape == x.shape
    assert delta.abs().max() <= torch.tensor(eps, dtype=delta.dtype), "eps as the output's dtype holds it"
    assert float(delta.abs().max()) > 0.9 * eps, "the scaled-up output layer saturates tanh"


@pytest.mark.parametrize("eps", [0, 2, 5, 8])
def test_mpg_attack_stays_within_eps_and_in_range(eps: int, generator_file: Path) -> None:
    model = make_tiny_model().eval()
    atk = create_attack("mpg", model, eps=eps, generator=str(generator_file))
    x = _images()
    adv = atk(x, index=torch.arange(len(x)))
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    assert float((adv - x).abs().max()) <= eps / 255 + 1e-6
    if eps:
        assert float((adv - x).abs().amax(dim=(1, 2, 3))[2:].min()) > 0.9 * eps / 255
    else:
        assert torch.equal(adv, x)


def test_mpg_attack_ignores_batching_and_dtype(generator_file: Path) -> None:
    model = make_tiny_model().double().eval()
    atk = create_attack("mpg", model, generator=str(generator_file))
    x = _images().double()
    whole = atk(x, index=torch.arange(6))
    parts = torch.cat([atk(x[:2], index=torch.arange(2)), atk(x[2:], index=torch.arange(2, 6))])
    assert whole.dtype == torch.float64
    assert torch.equal(whole, parts)


def test_mpg_is_registered_as_a_generator_family_with_a_stated_threat() -> None:
    entry = ATTACKS.get("mpg")
    assert entry.family.name == "generator"
    assert entry.family.perturbs_pixels and entry.family.linf_family and not entry.family.optimised
    assert entry.threat.access is Access.NONE and entry.threat.budget is Budget.LINF
    assert "surrogate" in entry.threat.render()
    assert not entry.differentiable and not entry.queries_model and not entry.uses_labels
    assert entry.eps_bounded
    assert entry.defaults == {"eps": ATTACKS.get("mifgsm").defaults["eps"], "generator": "default"}


# ---------------------------------------------------------------------------------------------
# MPG-Net's loss
# ---------------------------------------------------------------------------------------------


def test_ssim_is_one_for_equal_images_and_lower_for_noisy_ones() -> None:
    x = _images()
    assert torch.allclose(ssim(x, x), torch.ones(len(x)), atol=1e-5)
    noisy = (x + 0.1 * torch.randn_like(x)).clamp(0, 1)
    assert (ssim(noisy, x) < 0.99).all()


def test_generator_training_moves_embeddings_off_their_identity(tiny_trained_model: ReIDModel, tiny_split: TinySplit,
                                                                tmp_path: Path) -> None:
    """A few generator steps on one batch must lower cos(f(x'), own centre) - cos(f(x'), nearest
    other centre) and the similarity to the own centre, below where a fresh generator starts."""
    surrogate = tiny_trained_model.eval()
    pids = tiny_split.g_pids
    keep = pids > 0
    labels = torch.unique(pids[keep], return_inverse=True)[1]
    centres = identity_centres(surrogate, (tiny_split.gallery[keep] * 255).round().to(torch.uint8), labels,
                               torch.device("cpu"))  # fmt: skip
    q = torch.isin(tiny_split.q_pids, pids[keep])
    x = tiny_split.query[q][:16]
    y = torch.searchsorted(torch.unique(pids[keep]), tiny_split.q_pids[q][:16])
    eps = 8 / 255
    torch.manual_seed(0)
    gen = MPGNet(8)
    opt = torch.optim.Adam(gen.parameters(), lr=3e-3)

    def own_similarity() -> tuple[float, float]:
        with torch.no_grad():
            losses = generator_losses(gen, surrogate, x, y, centres, eps, 0.1, 0.1)
            f = F.normalize(surrogate((x + gen(x, eps)).clamp(0, 1)), dim=1)
        return float(losses["metric"]), float((f * centres[y]).sum(dim=1).mean())

    with torch.no_grad():
        clean_own = float((F.normalize(surrogate(x), dim=1) * centres[y]).sum(dim=1).mean())
    metric0, own0 = own_similarity()
    for _ in range(15):
        loss = generator_losses(gen, surrogate, x, y, centres, eps, 0.1, 0.1)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    metric1, own1 = own_similarity()
    assert metric1 < metric0, (metric0, metric1)
    assert own1 < own0 and own1 < clean_own, (clean_own, own0, own1)
    with torch.no_grad():
        assert gen(x, eps).abs().max() <= torch.tensor(eps), "a trained generator stays in the ball too"
    path = tmp_path / "trained.mpg.safetensors"
    save_generator(gen, path, {"eps": 8})
    atk = create_attack("mpg", surrogate, eps=8, generator=str(path))
    adv = atk(x, index=torch.arange(len(x)))
    assert float((adv - x).abs().max()) <= eps + 1e-6


# ---------------------------------------------------------------------------------------------
# SSD
# ---------------------------------------------------------------------------------------------


def test_ssd_consistency_is_zero_without_perturbation_and_positive_with_it() -> None:
    model = make_tiny_model().train()
    x = torch.rand(8, 3, 64, 32)
    gen = torch.Generator().manual_seed(0)
    assert float(ssd_loss(model, x, "backbone.layer2", 0.0, gen).detach()) < 1e-6
    assert float(ssd_loss(model, x, "backbone.layer2", 0.5, gen).detach()) > 1e-3
    with torch.no_grad():  # the hook is gone after the block
        model.eval()
        before = model(x)
        with self_perturbation(model, "backbone.layer2", 0.5, gen):
            during = model(x)
        after = model(x)
    assert torch.equal(before, after) and not torch.equal(before, during)


def test_ssd_layer_and_recipe_options_are_checked() -> None:
    model = make_tiny_model().train()
    with pytest.raises(ParameterError, match="ssd_layer 'backbone.layer9' is not a submodule"):
        ssd_loss(model, torch.rand(2, 3, 64, 32), "backbone.layer9", 0.2, torch.Generator())
    with pytest.raises(ParameterError, match="0 < eps <= 64"):
        APDRecipe(eps=0)
    with pytest.raises(ParameterError, match="ssd_magnitude 1 is out of range"):
        APDRecipe(ssd_magnitude=1.0)
    with pytest.raises(ParameterError, match="APD has no recipe option 'ssd_mag'"):
        APDRecipe(ssd_mag=0.3)


# ---------------------------------------------------------------------------------------------
# The recipe, end to end
# ---------------------------------------------------------------------------------------------


def _tiny_train(tiny_dataset: ReIDDataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    samples, _ = relabel(tiny_dataset.train)
    images = load_images(samples, (64, 32))
    return images, torch.tensor([s.pid for s in samples]), torch.tensor([s.camid for s in samples])


def test_recipe_runs_all_three_stages_and_writes_the_generator(tiny_dataset: ReIDDataset, tmp_path: Path) -> None:
    images, labels, camids = _tiny_train(tiny_dataset)
    card = MODELS.get("apd").card.replace(backbone="resnet_test", input_size=(64, 32), feat_dim=16,
                                          num_classes=int(labels.max()) + 1, train_dataset="synthetic-tiny")  # fmt: skip
    torch.manual_seed(0)
    model = build_model(card)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = APDRecipe(generator_width=4)
    cfg = TrainConfig(lr=3e-3, triplet_weight=1.0, p=4, k=4, epochs=1, warmup_epochs=0, milestones=(), iters_per_epoch=2)
    record = train(model, recipe, images, labels, camids, cfg, progress=False)
    assert set(record["history"][0]) == {"loss", "hard", "ssd"}
    assert all(torch.isfinite(torch.tensor(v)) for v in record["history"][0].values())
    assert any(not torch.equal(start[k], v) for k, v in model.state_dict().items()), "SP-Net trained"
    assert set(recipe.stage2["final_losses"]) == {"loss", "metric", "l1", "ssim"}
    assert len(recipe.surrogate["weights_sha256"]) == 64

    ckpt = tmp_path / "apd-tiny.safetensors"
    card = save_checkpoint(model, card, ckpt)
    written = recipe.save_artifacts(ckpt, card)
    gen_path = tmp_path / "apd-tiny.mpg.safetensors"
    assert written == [gen_path, tmp_path / "apd-tiny.mpg.json"]
    gcard = json.loads((tmp_path / "apd-tiny.mpg.json").read_text())
    assert gcard["eps"] == 5 and gcard["train_dataset"] == "synthetic-tiny" and gcard["apd_sha256"] == card.sha256
    assert gcard["surrogate"]["weights_sha256"] == recipe.surrogate["weights_sha256"]
    assert gcard["surrogate"]["backbone"] == "resnet_test"
    assert {"metric", "l1", "ssim", "l1_weight", "ssim_weight"} <= set(gcard["losses"])
    net, loaded_card = load_generator(gen_path)
    assert net.width == 4 and loaded_card["sha256"] == gcard["sha256"]
    x = images[:4].float() / 255
    with torch.no_grad():
        assert torch.equal(net(x, EPS), recipe.generator.cpu()(x, EPS))  # type: ignore[union-attr]

    # reusing the generator skips stages 1 and 2
    torch.manual_seed(0)
    again = APDRecipe(generator_checkpoint=str(gen_path))
    train(build_model(card), again, images, labels, camids, cfg, progress=False)
    assert again.stage2["reused"] == str(gen_path)
    assert again.stage2["final_losses"] == pytest.approx(recipe.stage2["final_losses"])
    assert again.surrogate["weights_sha256"] == recipe.surrogate["weights_sha256"]


@pytest.mark.slow
def test_reidbench_train_apd_writes_checkpoint_and_generator(tmp_path: Path, cli_env: Path) -> None:
    ckpt = tmp_path / "apd.safetensors"
    res = CliRunner().invoke(main, ["train", "--model", "apd", "--dataset", "synthetic-tiny", "--backbone", "resnet_test",
                                    "--epochs", "1", "--recipe-option", "generator_width=4", "--out", str(ckpt)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert ckpt.is_file() and ckpt.with_suffix(".json").is_file()
    gen = tmp_path / "apd.mpg.safetensors"
    assert gen.is_file(), "the trained MPG-Net goes beside the checkpoint (train_registered calls recipe.save_artifacts)"
    gcard = json.loads((tmp_path / "apd.mpg.json").read_text())
    assert gcard["train_dataset"] == "synthetic-tiny" and gcard["dataset_fingerprint"]
    model = make_tiny_model()
    assert create_attack("mpg", model, generator=str(gen)).generator_card["sha256"] == gcard["sha256"]


# ---------------------------------------------------------------------------------------------
# One-line errors, weights-only loading, the command line
# ---------------------------------------------------------------------------------------------


def test_mpg_without_a_generator_is_one_line(tmp_path: Path, cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mpg_net, "SHIPPED_GENERATOR", tmp_path / "absent" / "mpg.safetensors")
    with pytest.raises(CheckpointError) as exc:
        create_attack("mpg", make_tiny_model())
    assert str(exc.value) == ("no trained MPG-Net generator; train one with `reidbench train --model apd` "
                              "or pass --attack-option generator=PATH")  # fmt: skip
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--dataset", "synthetic-tiny", "--attack", "mpg",
                                    "--out", str(tmp_path / "r"), "--quiet", "--no-report"])  # fmt: skip
    assert "no trained MPG-Net generator" in _one_line_error(res)
    with pytest.raises(CheckpointError, match="not found"):
        create_attack("mpg", make_tiny_model(), generator=str(tmp_path / "nope.safetensors"))


def test_mpg_eps_out_of_range_is_one_line(generator_file: Path, tmp_path: Path, cli_env: Path) -> None:
    with pytest.raises(ParameterError, match=r"mpg: eps 100/255 is out of range; use 0 <= eps <= 64"):
        create_attack("mpg", make_tiny_model(), eps=100, generator=str(generator_file))
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--dataset", "synthetic-tiny", "--attack", "mpg",
                                    "--eps", "-1", "--attack-option", f"generator={generator_file}",
                                    "--out", str(tmp_path / "r"), "--quiet", "--no-report"])  # fmt: skip
    assert "use 0 <= eps <= 64" in _one_line_error(res)


class _Planted:
    """Unpickling this runs code: it writes a file. A weights-only loader must never do that."""

    marker: Path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.write_text, (self.marker, "ran"))


def test_generator_loading_is_weights_only(tmp_path: Path, generator_file: Path) -> None:
    model = make_tiny_model()
    marker = tmp_path / "ran.txt"
    planted = _Planted()
    planted.marker = marker
    for name in ("evil.pt", "evil.safetensors"):
        path = tmp_path / name
        path.write_bytes(pickle.dumps({"enc1.0.weight": planted}))
        with pytest.raises(CheckpointError):
            create_attack("mpg", model, generator=str(path))
    assert not marker.exists(), "no code from a generator file ran"

    torch.save(_saturating().state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="read weights-only from .safetensors"):
        create_attack("mpg", model, generator=str(tmp_path / "plain.pt"))

    reid = tmp_path / "reid.safetensors"
    save_checkpoint(model, MODELS.get("baseline").card, reid)
    with pytest.raises(CheckpointError, match="is not an MPG-Net generator"):
        create_attack("mpg", model, generator=str(reid))

    state = dict(load_generator(generator_file)[0].state_dict())
    state.pop("out.bias")
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="missing keys: out.bias"):
        create_attack("mpg", model, generator=str(tmp_path / "partial.safetensors"))

    tampered = tmp_path / "t.mpg.safetensors"
    tampered.write_bytes(generator_file.read_bytes())
    tampered.with_suffix(".json").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(CheckpointError, match="does not match the sha256 on its card"):
        create_attack("mpg", model, generator=str(tampered))


def test_list_shows_apd_and_mpg() -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["list", "models"])
    assert res.exit_code == 0, res.output
    assert any(ln.split()[:2] == ["apd", "APD-like"] for ln in res.output.splitlines()), res.output
    res = runner.invoke(main, ["list", "attacks"])
    assert res.exit_code == 0, res.output
    row = next((ln for ln in res.output.splitlines() if ln.split()[:1] == ["mpg"]), "")
    assert "generator" in row and "eps=5" in row, res.output


def test_mpg_runs_through_the_harness_and_the_report(generator_file: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    import pandas as pd

    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--model", "baseline", "--checkpoint", str(tiny_ckpt), "--dataset",
                                    "synthetic-tiny", "--attack", "mpg", "--attack-option", f"generator={generator_file}",
                                    "--eps", "4", "--out", str(out), "--quiet", "--no-report"])  # fmt: skip
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out / "results.csv")
    row = df[df["attack"] == "mpg"].iloc[0]
    assert row["family"] == "generator" and row["eps"] == 4
    assert row["x_linf_max"] <= 4 + 1e-6
    assert "no knowledge of the model" in row["threat"] and "surrogate" in row["threat"]
    clean = df[df["attack"] == "none"].iloc[0]
    assert row["seconds"] > 0 and clean["mAP"] >= 0
    res = CliRunner().invoke(main, ["report", str(out), "--format", "md"])
    assert res.exit_code == 0, res.output
