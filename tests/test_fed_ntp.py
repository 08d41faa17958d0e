"""FED (model and recipe ``fed``) and the non-target-pedestrian occlusion ``ntp``."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from click.testing import CliRunner

from reidbench.attacks import ATTACKS, AttackContext, create_attack
from reidbench.attacks.ntp import NTP
from reidbench.cli import main
from reidbench.data import ReIDDataset, relabel
from reidbench.data.images import load_images, to_float
from reidbench.errors import ParameterError, ReidbenchError
from reidbench.eval.cell import attack_context
from reidbench.eval.runtime import SplitData
from reidbench.models import MODELS, model_card
from reidbench.models.checkpoints import read_state_dict
from reidbench.models.fed import FEDHead, FEDNetwork
from reidbench.train import create_recipe, train, train_registered
from reidbench.train.recipes.fed import (
    FeatureDiffusion,
    FEDRecipe,
    IdentityMemory,
    heads_for,
    npo_masks,
)
from reidbench.train.trainer import TrainConfig, TrainContext
from reidbench.zoo import create_model

from .conftest import TinySplit, make_tiny_model


def fed_net(num_classes: int = 8, backbone: str = "resnet_test") -> FEDNetwork:
    torch.manual_seed(0)
    net = create_model("fed", checkpoint=None, backbone=backbone, num_classes=num_classes, input_size=(64, 32))
    assert isinstance(net, FEDNetwork)
    return net


def train_ctx(model: FEDNetwork, recipe: FEDRecipe, images: torch.Tensor, labels: torch.Tensor) -> TrainContext:
    """What the trainer hands a recipe, for driving its steps by hand."""
    cfg = TrainConfig(lr=3e-3, epochs=10, warmup_epochs=0, milestones=())
    ctx = TrainContext(cfg=cfg, model=model, images=(images * 255).round().to(torch.uint8), labels=labels,
                       camids=torch.zeros_like(labels), num_classes=int(labels.max()) + 1, device=torch.device("cpu"),
                       gen=torch.Generator().manual_seed(0))  # fmt: skip
    recipe.prepare(ctx)
    ctx.optimizers = recipe.optimizers(ctx)
    return ctx


@pytest.fixture(scope="module")
def tiny_train(tiny_dataset: ReIDDataset) -> tuple[torch.Tensor, torch.Tensor]:
    """synthetic-tiny's training images (float, 64x32) and labels 0..23."""
    samples, _ = relabel(tiny_dataset.train)
    return to_float(load_images(samples, (64, 32))), torch.tensor([s.pid for s in samples])


# ---------------------------------------------------------------------------------------------
# The network: part pooling, OEM and neck at inference
# ---------------------------------------------------------------------------------------------


def test_the_embedding_is_the_neck_of_the_oem_weighted_parts() -> None:
    net = fed_net()
    assert isinstance(net.head, FEDHead) and not net.training
    x = torch.rand(3, 3, 64, 32)
    emb = net(x)
    assert emb.shape == (3, net.feat_dim) == (3, 16)
    fmap = net.feature_map(x)
    b, c, h, w = fmap.shape
    parts = fmap.view(b, c, 4, h // 4, w).mean(dim=(3, 4)).transpose(1, 2)  # 4 horizontal stripes, top first
    with torch.no_grad():
        scores = torch.cat([net.head.oem.scorers[i](parts[:, i]) for i in range(4)], dim=1)
        reduced = torch.cat([net.head.reduction[i](scores[:, i : i + 1] * parts[:, i]) for i in range(4)], dim=1)
        assert torch.allclose(emb, net.head.bnneck(reduced), atol=1e-5)
        assert torch.allclose(net.head(fmap), emb)  # what feature-map attacks call
        net.head.oem.scorers[2][2].bias += 5.0  # the third part's occlusion score moves...
        moved = net(x)
    assert torch.allclose(moved[:, :8], emb[:, :8], atol=1e-6), "...only that part's slice moves"
    assert not torch.allclose(moved[:, 8:12], emb[:, 8:12], atol=1e-3)


def test_npo_masks_follow_the_papers_three_quarter_rule() -> None:
    clean = torch.zeros(5, 3, 64, 32)
    occ = clean.clone()
    occ[0, :, :16] = 1  # the top stripe
    occ[1, :, :28] = 1  # top stripe + 3/4 of the second: not more than 3/4, still a body part
    occ[2, :, :29] = 1  # top stripe + 13/16 of the second
    occ[3, :, :, :16] = 1  # a vertical strip W/2 wide: ignored
    occ[4, :, 48:] = 1  # the bottom stripe
    expected = torch.tensor([[0, 1, 1, 1], [0, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.float)
    assert torch.equal(npo_masks(clean, occ, 4), expected)


def test_oem_learns_low_scores_where_the_npo_mask_says_occluded(tiny_train: tuple[torch.Tensor, torch.Tensor],
                                                                tiny_split: TinySplit) -> None:
    """The recipe's own NPO pairs, masks and MSE term train the OEM; on held-out images a stripe
    covered by an occluder then scores lower than the same stripe uncovered, and lower than the
    image's visible stripes. The occluders are flat colours (hand-made non-pedestrian
    occlusions), so that a few hundred steps suffice; a mask whose stripes were out of order or
    inverted would teach the opposite."""
    images, labels = tiny_train
    net = fed_net(num_classes=int(labels.max()) + 1, backbone="resnet_tiny").train()
    recipe = FEDRecipe()
    ctx = train_ctx(net, recipe, images, labels)
    g = torch.Generator().manual_seed(1)
    flat = torch.rand(16, 3, 1, 1, generator=g).expand(16, 3, 64, 32).contiguous()
    assert recipe.npo is not None
    recipe.npo.set_context(AttackContext(occluder_bank=flat, seed=0))
    opt = ctx.optimizers[0]
    for _ in range(150):
        pick = torch.randperm(len(images), generator=g)[:32]
        mse = recipe.losses(images[pick], labels[pick], ctx)[0]["mse"]
        opt.zero_grad()
        mse.backward()
        opt.step()
    net.eval()
    test = tiny_split.gallery
    colour = torch.rand(len(test), 3, 1, 1, generator=g)
    top, bottom = test.clone(), test.clone()
    top[:, :, :16] = colour
    bottom[:, :, 48:] = colour
    with torch.no_grad():
        clean, s_top, s_bottom = (net.forward_train(v).scores for v in (test, top, bottom))
    assert (s_top[:, 0] < clean[:, 0]).float().mean() > 0.8, "most covered top stripes score lower than uncovered"
    assert (s_bottom[:, 3] < clean[:, 3]).float().mean() > 0.8
    assert s_top[:, 0].mean() < s_top[:, 1:].mean() and s_bottom[:, 3].mean() < s_bottom[:, :3].mean()


# ---------------------------------------------------------------------------------------------
# The FDM and the memory: training only
# ---------------------------------------------------------------------------------------------


def test_fdm_is_not_in_the_inference_path(tiny_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = tiny_train
    x, y = images[:16], labels[:16] % 4
    net = fed_net(num_classes=4).train()
    recipe = FEDRecipe()
    ctx = train_ctx(net, recipe, x, y)
    assert recipe.aux is not None
    calls: list[str] = []
    hooks = [m.register_forward_hook(lambda mod, *_: calls.append(type(mod).__name__)) for m in recipe.aux.modules()]
    recipe.step(x, y, ctx)
    assert "FeatureDiffusion" in calls, "the hooks see the FDM during training"
    calls.clear()
    net.eval()
    with torch.no_grad():
        emb = net(x)
        net.forward_train(x)
        for p in recipe.aux.parameters():
            p.normal_()
        assert torch.equal(net(x), emb), "randomised FDM parameters leave the embedding unchanged"
    assert calls == [], "the network's forward never reaches the FDM"
    for hook in hooks:
        hook.remove()
    assert not {id(p) for p in net.parameters()} & {id(p) for p in recipe.aux.parameters()}
    assert not any(k.startswith(("fdm", "aux")) or ".fdm" in k for k in net.state_dict())


def test_memory_search_excludes_the_own_identity_and_updates_with_momentum() -> None:
    centres = torch.eye(4) + 0.1
    memory = IdentityMemory(centres, momentum=0.2, tau=0.05)
    f = centres[[0, 2]].clone()  # each feature is its own identity's centre, the nearest of all
    y = torch.tensor([0, 2])
    near = memory.nearest_others(f, y, 3)
    for i, own in enumerate(y.tolist()):
        assert not any(torch.equal(row, centres[own]) for row in near[i])
    memory.update(torch.ones(2, 4), torch.tensor([1, 1]))
    assert torch.allclose(memory.centres[1], 0.2 * centres[1] + 0.8 * torch.ones(4))
    assert torch.equal(memory.centres[0], centres[0])
    assert float(memory.loss(centres[[3]], torch.tensor([3]))) < float(memory.loss(centres[[3]], torch.tensor([0])))


def test_fdm_diffuses_only_where_the_oem_says_visible() -> None:
    """Eq. 7: FFN2(s * FFN1(f_d) + f'): with all scores 0 the memory centres cannot reach the output."""
    torch.manual_seed(0)
    fdm = FeatureDiffusion(16, 4, heads_for(16, 8)).eval()
    f = torch.randn(3, 16)
    a, b = torch.randn(3, 5, 16), torch.randn(3, 5, 16)
    with torch.no_grad():
        zero = torch.zeros(3, 4)
        assert torch.equal(fdm(f, zero, a), fdm(f, zero, b))
        ones = torch.ones(3, 4)
        assert not torch.allclose(fdm(f, ones, a), fdm(f, ones, b))
        visible = torch.tensor([[1.0, 0, 0, 0]]).expand(3, 4)
        moved = fdm(f, visible, a) - fdm(f, visible, b)
    assert moved[:, 4:].abs().max() == 0 and moved[:, :4].abs().max() > 0
    assert heads_for(128, 8) == 8 and heads_for(12, 8) == 6 and heads_for(7, 8) == 7


# ---------------------------------------------------------------------------------------------
# The recipe through the shared trainer, the registry and the command line
# ---------------------------------------------------------------------------------------------


def test_the_recipe_runs_through_the_shared_trainer(tiny_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = tiny_train
    net = fed_net(num_classes=int(labels.max()) + 1).train()
    recipe = create_recipe("fed")
    assert isinstance(recipe, FEDRecipe)
    before = [p.detach().clone() for p in net.parameters()]
    record = train(net, recipe, (images * 255).round().to(torch.uint8), labels, torch.zeros_like(labels),
                   TrainConfig(p=4, k=2, iters_per_epoch=2).scaled(1), progress=False)  # fmt: skip
    assert record["recipe"] == "fed" and set(record["history"][0]) == {"loss", "mse", "id", "con"}
    assert all(torch.isfinite(torch.tensor(v)) for v in record["history"][0].values())
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True))
    assert record["hparams"] == {"k": 8, "heads": 8, "tau": 0.05, "momentum": 0.2, "jitter": 0.5, "occluder_bank": 256,
                                 "k_used": 8, "heads_used": 8}  # 24 identities; resnet_test's width 16 takes 8 heads
    assert not net.training


def test_the_recipe_refuses_a_plain_network_and_bad_options(tiny_train: tuple[torch.Tensor, torch.Tensor]) -> None:
    images, labels = tiny_train
    plain = create_model("baseline", checkpoint=None, backbone="resnet_test", num_classes=24, input_size=(64, 32))
    with pytest.raises(ReidbenchError, match="trains a FEDNetwork"):
        train_ctx(plain, FEDRecipe(), images[:8], labels[:8])  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="tau 0 is out of range"):
        FEDRecipe(tau=0)
    with pytest.raises(ParameterError, match="k 0 is out of range"):
        create_recipe("fed", k="0")


def test_the_card_states_paper_code_and_deviations() -> None:
    card = MODELS.get("fed").card
    assert card.method == "FED-like" and card.recipe == "fed"
    assert "Feature Erasing and Diffusion Network" in card.paper and "CVPR 2022" in card.paper
    assert card.code == "ZacharyWang-007/FED-Occluded-ReID"
    assert (card.backbone, card.input_size, card.train_dataset) == ("resnet_tiny", (128, 64), "synthetic-mini")
    text = " ".join(card.deviations).lower()
    for needle in ("vit-b/16", "schedule", "occluder", "label_smoothing", "fdm", "embedding"):
        assert needle in text, needle
    assert {r.model for r in card.paper_results} == {"FED", "baseline"}
    net = create_model("fed", checkpoint=None)
    assert isinstance(net, FEDNetwork)
    assert net(torch.rand(2, 3, *card.input_size)).shape == (2, card.feat_dim)


def test_train_registered_writes_a_checkpoint_that_loads_as_fed(tiny_dataset: ReIDDataset, tmp_path: Path) -> None:
    out = tmp_path / "fed.safetensors"
    card, path = train_registered("fed", dataset="synthetic-tiny", data_root=tiny_dataset.root.parent, out=out,
                                  backbone="resnet_test", input_size=(64, 32), progress=False,
                                  config=TrainConfig(p=4, k=2, iters_per_epoch=1).scaled(1))  # fmt: skip
    assert path == out and card.feat_dim == 16 and card.recipe == "fed" and card.hyperparams["tau"] == 0.05
    keys = set(read_state_dict(out))
    assert any(k.startswith("head.oem.") for k in keys) and not any("fdm" in k for k in keys)
    net = create_model("fed", checkpoint=out)
    assert isinstance(net, FEDNetwork) and net.card.sha256 == card.sha256
    assert net(torch.rand(2, 3, 64, 32)).shape == (2, 16)


def test_train_and_run_ntp_through_the_cli(tiny_dataset: ReIDDataset, tmp_path: Path) -> None:
    runner = CliRunner()
    ckpt = tmp_path / "fed.safetensors"
    root = str(tiny_dataset.root.parent)
    res = runner.invoke(main, ["train", "--model", "fed", "--dataset", "synthetic-tiny", "--data-root", root,
                               "--backbone", "resnet_test", "--epochs", "1", "--out", str(ckpt)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert ckpt.is_file() and ckpt.with_suffix(".json").is_file()
    res = runner.invoke(main, ["run", "--model", "fed", "--checkpoint", str(ckpt), "--dataset", "synthetic-tiny",
                               "--data-root", root, "--attack", "ntp", "--area", "0.1,0.3", "--out",
                               str(tmp_path / "run"), "--quiet", "--no-report"])  # fmt: skip
    assert res.exit_code == 0, res.output
    with open(tmp_path / "run" / "results.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    ntp = [r for r in rows if r["attack"] == "ntp"]
    assert sorted(float(r["area"]) for r in ntp) == [0.1, 0.3]
    assert all("identities" in r["threat"] and r["family"] == "occlusion" for r in ntp)


def test_list_shows_fed_and_ntp() -> None:
    res = CliRunner().invoke(main, ["list", "models"])
    assert res.exit_code == 0 and any(line.split()[:2] == ["fed", "FED-like"] for line in res.output.splitlines())
    res = CliRunner().invoke(main, ["list", "attacks"])
    assert res.exit_code == 0 and any(line.split()[:2] == ["ntp", "occlusion"] for line in res.output.splitlines())
    assert model_card("fed").name == "fed"


# ---------------------------------------------------------------------------------------------
# NTP
# ---------------------------------------------------------------------------------------------


def ntp(model: torch.nn.Module, bank: torch.Tensor, pids: torch.Tensor, seed: int = 0, **params: object) -> NTP:
    attack = create_attack("ntp", model, **params)
    attack.set_context(AttackContext(occluder_bank=bank, occluder_pids=pids, seed=seed))
    return attack


@pytest.fixture(scope="module")
def net() -> torch.nn.Module:
    """NTP uses no model; any eval-mode network will do (its mode is checked)."""
    return make_tiny_model().eval()


def test_ntp_is_seeded_per_image(net: torch.nn.Module, tiny_split: TinySplit) -> None:
    images, pids, index = tiny_split.query[:6], tiny_split.q_pids[:6], torch.arange(3, 9)
    bank, bank_pids = tiny_split.gallery[::3], tiny_split.g_pids[::3]
    first = ntp(net, bank, bank_pids, seed=1)(images, pids, index)
    assert torch.equal(first, ntp(net, bank, bank_pids, seed=1)(images, pids, index))
    halves = torch.cat([ntp(net, bank, bank_pids, seed=1)(images[s], pids[s], index[s]) for s in (slice(0, 2), slice(2, 6))])
    assert torch.equal(first, halves), "the same image gets the same paste in any batch"
    assert not torch.equal(first, ntp(net, bank, bank_pids, seed=2)(images, pids, index))
    assert not torch.equal(first, images)


@pytest.mark.parametrize("area", [0.1, 0.2, 0.3])
def test_ntp_covers_one_side_at_full_height_with_the_given_area(area: float, net: torch.nn.Module) -> None:
    h, w = 64, 32
    images = torch.zeros(8, 3, h, w)
    bank = 0.1 + 0.9 * torch.rand(4, 3, h, w, generator=torch.Generator().manual_seed(0))  # never equal to 0
    out = ntp(net, bank, torch.tensor([5, 6, 7, 8]), area=area)(images, torch.full((8,), 1), torch.arange(8))
    changed = (out != images).any(dim=1)  # (8, H, W)
    width = round(area * w)
    sides = set()
    for c in changed:
        cols = torch.nonzero(c.all(dim=0)).flatten().tolist()
        assert c.any(dim=0).sum() == len(cols) == width, "whole columns, full height"
        assert cols == list(range(width)) or cols == list(range(w - width, w)), "flush with one side"
        sides.add(cols[0] == 0)
        assert abs(c.float().mean().item() - area) <= 0.5 / w
    assert sides == {True, False}, "both sides occur over eight images"


def test_ntp_default_width_is_a_quarter_to_a_half(net: torch.nn.Module) -> None:
    images = torch.zeros(16, 3, 64, 32)
    bank = 0.5 + 0.5 * torch.rand(2, 3, 64, 32)
    out = ntp(net, bank, torch.tensor([2, 3]))(images, torch.ones(16, dtype=torch.long), torch.arange(16))
    widths = (out != images).any(dim=1).all(dim=1).sum(dim=1)
    assert widths.min() >= 8 and widths.max() <= 16 and len(set(widths.tolist())) > 1


def _donors(out: torch.Tensor, images: torch.Tensor, n: int) -> list[int]:
    """The bank index of each pasted strip, read from its flat colour (donor j is (j+1)/(n+1))."""
    donors = []
    for o, x in zip(out, images, strict=True):
        value = o[:, (o != x).any(dim=0)].unique()
        assert len(value) == 1
        donors.append(int(round(float(value) * (n + 1))) - 1)
    return donors


def _coded_bank(n: int) -> torch.Tensor:
    return (torch.arange(1, n + 1, dtype=torch.float) / (n + 1)).view(n, 1, 1, 1).expand(n, 3, 64, 32).contiguous()


def test_ntp_never_pastes_the_targets_identity(net: torch.nn.Module, tiny_split: TinySplit) -> None:
    """Each donor image is one flat colour, so the pasted strip says which donor it came from."""
    images, pids = tiny_split.query, tiny_split.q_pids
    bank_pids = torch.cat([pids.unique().repeat(4), torch.tensor([0, -1])])  # the queries' identities, a distractor, junk
    out = ntp(net, _coded_bank(len(bank_pids)), bank_pids, area=0.3)(images, pids, torch.arange(len(images)))
    donors = bank_pids[_donors(out, images, len(bank_pids))]
    assert (donors != pids).all() and (donors > 0).all()
    # all but two images of the bank are the target's identity: only those two may be pasted
    same = torch.tensor([7] * 30 + [0, -1, 999, 1000])
    out = ntp(net, _coded_bank(len(same)), same, area=0.3)(images, torch.full((len(images),), 7), torch.arange(len(images)))
    assert set(same[_donors(out, images, len(same))].tolist()) == {999, 1000}


def test_ntp_refuses_rather_than_paste_the_same_identity(net: torch.nn.Module) -> None:
    images, pids = torch.rand(2, 3, 64, 32), torch.tensor([3, 3])
    with pytest.raises(ParameterError, match="no image of an identity other than 3"):
        ntp(net, torch.rand(4, 3, 64, 32), torch.tensor([3, 3, 0, -1]))(images, pids, torch.arange(2))
    attack = create_attack("ntp", net)
    attack.set_context(AttackContext(occluder_bank=torch.rand(4, 3, 64, 32), seed=0))
    with pytest.raises(ParameterError, match="occluder_pids"):
        attack(images, pids, torch.arange(2))
    with pytest.raises(ParameterError, match="0.01 <= area <= 0.9"):
        create_attack("ntp", net, area=0.95)


def test_the_harness_gives_donor_identities_to_ntp_alone(tiny_split: TinySplit) -> None:
    split = SplitData(query=(tiny_split.query * 255).round().to(torch.uint8),
                      gallery=(tiny_split.gallery * 255).round().to(torch.uint8),
                      q_pids=tiny_split.q_pids, g_pids=tiny_split.g_pids,
                      q_camids=tiny_split.q_camids, g_camids=tiny_split.g_camids)  # fmt: skip
    rt = SimpleNamespace(device=torch.device("cpu"))
    given = attack_context(rt, ATTACKS.get("ntp"), split, "query", None, seed=3)  # type: ignore[arg-type]
    assert given.occluder_bank is not None and given.occluder_pids is not None
    assert len(given.occluder_pids) == len(given.occluder_bank)
    bank_u8 = (given.occluder_bank * 255).round().to(torch.uint8)
    for img, pid in zip(bank_u8, given.occluder_pids, strict=True):  # each pid is its image's
        match = (split.query == img).flatten(1).all(dim=1)
        assert int(pid) in split.q_pids[match].tolist()
    assert attack_context(rt, ATTACKS.get("npo"), split, "query", None, seed=3).occluder_pids is None  # type: ignore[arg-type]
    assert ATTACKS.get("ntp").family.occludes and not ATTACKS.get("ntp").queries_model
