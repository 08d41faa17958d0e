"""The attack suite: contract tests parametrised over the registry, plus each attack's own facts.

A newly registered attack is covered by the parametrised tests without anyone writing a test
for it: budget and range, determinism under a seed and under a different batching, the model's
mode, the refusals, labels only for label-using attacks, and "does not raise mAP".
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from reidbench.attacks import (
    ATTACKS,
    AttackContext,
    FeatureMapAttack,
    GalleryClassifier,
    InputAttack,
    MetricAttack,
    attack_params,
    create_attack,
    image_seed,
)
from reidbench.attacks.aos_window import window_grid
from reidbench.attacks.base import mean_colour
from reidbench.errors import ModelModeError, ParameterError, UnknownNameError
from reidbench.eval.distance import compute_distance
from reidbench.eval.metrics import evaluate_rank
from reidbench.models import ReIDModel

from .conftest import TinySplit, make_tiny_model

ALL = ATTACKS.names()
INPUT = [n for n in ALL if not ATTACKS.get(n).family.perturbs_feature_map]
FMAP = [n for n in ALL if ATTACKS.get(n).family.perturbs_feature_map]
# Cheaper settings for the contract tests; only the parameters an attack has are used.
# batch_invariant=False batches the classification attacks; the determinism test restores it.
FAST = {"steps": 2, "n_queries": 10, "stride": 20, "batch_invariant": False}
EXPECTED = {
    "mifgsm": "metric", "ifgsm": "metric", "fgsm": "metric", "sma": "metric", "fna": "metric", "lta": "metric",
    "pgd": "classification", "apgd-ce": "classification", "apgd-dlr": "classification",
    "square": "classification", "cw": "classification",
    "erasing": "occlusion", "aos-window": "occlusion", "npo": "occlusion", "ntp": "occlusion",
    "fmap-erase": "feature-map", "fmap-transform": "feature-map", "fmap-noise": "feature-map",
    "noise": "noise",
}  # fmt: skip


def fast(name: str, **extra: Any) -> dict[str, Any]:
    defaults = ATTACKS.get(name).defaults
    return {**{k: v for k, v in FAST.items() if k in defaults}, **extra}


def make_context(model: nn.Module, split: TinySplit, seed: int = 0, dtype: torch.dtype = torch.float32) -> AttackContext:
    """What the harness gives a query attack: the gallery as guides, its identity means, a bank."""
    with torch.no_grad():
        gf = model(split.gallery.to(dtype))
    pids = split.g_pids.unique()
    protos = torch.stack([gf[split.g_pids == p].mean(0) for p in pids])
    return AttackContext(guide_feats=gf, guide_pids=split.g_pids, guide_camids=split.g_camids, proto_feats=protos,
                         proto_pids=pids, camids=split.q_camids, occluder_bank=split.gallery[::6],
                         occluder_pids=split.g_pids[::6], seed=seed)  # fmt: skip


def build(name: str, model: nn.Module, split: TinySplit, seed: int = 0, dtype: torch.dtype = torch.float32,
          **params: Any) -> Any:
    attack = create_attack(name, model, **fast(name, **params))
    attack.set_context(make_context(model, split, seed, dtype))
    return attack


def run(attack: Any, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
    """Attacked images, or for a feature-map attack the perturbed embeddings."""
    if isinstance(attack, FeatureMapAttack):
        return attack.embed(images, index)
    return attack(images, labels, index)


@pytest.fixture(scope="module")
def model() -> ReIDModel:
    return make_tiny_model().eval()


@pytest.fixture(scope="module")
def batch(tiny_split: TinySplit) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eight queries: images, pids and their global indices in the query set."""
    index = torch.arange(2, 10)
    return tiny_split.query[index], tiny_split.q_pids[index], index


# ---------------------------------------------------------------------------------------------
# The registry and create_attack
# ---------------------------------------------------------------------------------------------


def test_registry_has_the_suite() -> None:
    assert {n: ATTACKS.get(n).family.name for n in EXPECTED} == EXPECTED
    for name in ALL:
        entry = ATTACKS.get(name)
        doc = entry.cls.__dict__.get("__doc__") or ""  # its own docstring, not a base class's
        assert entry.threat and entry.description, name
        assert "Deviations from the paper/code" in doc and "Threat model" in doc, name


def test_create_attack_converts_budgets_from_255_units(model: nn.Module) -> None:
    attack = create_attack("mifgsm", model, eps=8, step=2, steps=20)
    assert attack.eps == pytest.approx(8 / 255) and attack.step == pytest.approx(2 / 255) and attack.steps == 20
    assert attack.cli_params == {"eps": 8, "step": 2, "steps": 20, "momentum": 1.0, "eot": 1, "same_camera_guides": True}
    assert create_attack("pgd", model).inner.alpha == pytest.approx(1 / 255)
    assert create_attack("tk:PGD", model, eps=8, alpha=2, steps=3).inner.eps == pytest.approx(8 / 255)
    assert create_attack("sma", model, steps="20", random_start="false").steps == 20  # strings from the CLI


def test_attack_params_resolves_defaults_in_cli_units() -> None:
    assert attack_params("sma") == {"eps": 5, "step": 1, "steps": 15, "random_start": True, "eot": 1}
    assert attack_params("aos-window", area=0.3) == {"area": 0.3, "stride": 10}
    assert attack_params("fmap-erase", area=(0.1, 0.2)) == {"area": [0.1, 0.2]}
    assert attack_params("tk:FGSM", eps=4) == {"scale": 30.0, "batch_invariant": True, "eps": 4}


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("mifgsm", {"epsilon": 5}, "its parameters are: eps, step, steps, momentum, eot, same_camera_guides"),
        ("mifgsm", {"eps": 100}, "use 0 <= eps <= 64"),
        ("sma", {"eps": -1}, "use 0 <= eps <= 64"),
        ("lta", {"steps": 0}, "steps 0 is out of range; use an integer with 1 <= steps <= 10000"),
        ("ifgsm", {"steps": 2.5}, "steps 2.5 is out of range; use an integer"),
        ("mifgsm", {"step": 0}, "step 0/255 is out of range"),
        ("mifgsm", {"eot": 0}, "1 <= eot <= 1000"),
        ("erasing", {"area": 1.5}, "0.01 <= area <= 0.9"),
        ("aos-window", {"area": 0}, "0.01 <= area <= 0.9"),
        ("npo", {"area": 0.95}, "0.01 <= area <= 0.9"),
        ("fmap-erase", {"area": 0.9}, "0.01 <= area <= 0.6"),
        ("fmap-noise", {"area": [0.3, 0.1]}, "0.01 <= lo <= hi <= 0.6"),
        ("fmap-noise", {"noise_mode": "add"}, "noise_mode must be one of 'replace', 'multiply'"),
        ("erasing", {"fill": "blue"}, "fill must be one of"),
        ("pgd", {"eps": 65}, "use 0 <= eps <= 64"),
        ("tk:PGD", {"epsilon": 5}, "its parameters are: eps, alpha, steps, random_start"),
        ("sma", {"random_start": "maybe"}, "random_start must be true or false"),
    ],
)
def test_create_attack_rejects_bad_parameters(model: nn.Module, name: str, params: dict[str, Any], message: str) -> None:
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace("+", r"\+")):
        create_attack(name, model, **params)


def test_unknown_attack_names(model: nn.Module) -> None:
    with pytest.raises(UnknownNameError, match="Did you mean mifgsm"):
        create_attack("mifgsn", model)
    with pytest.raises(UnknownNameError, match="torchattacks has no attack 'Nope'"):
        create_attack("tk:Nope", model)


# ---------------------------------------------------------------------------------------------
# Contract tests over the registry
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", INPUT)
def test_budget_range_and_labels(name: str, model: nn.Module, tiny_split: TinySplit, batch: tuple,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Within eps (for eps-bounded attacks) and [0,1]; labels reach only label-using attacks."""
    images, pids, index = batch
    attack = build(name, model, tiny_split)
    seen: list[Any] = []
    method = "forward" if isinstance(attack, MetricAttack) else "perturb"
    inner = getattr(attack, method)

    def spy(x: torch.Tensor, labels: Any = None, *args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(labels)
        return inner(x, labels, *args, **kwargs)

    monkeypatch.setattr(attack, method, spy)
    adv = attack(images, pids, index)
    assert adv.shape == images.shape and adv.dtype == images.dtype
    assert float(adv.min()) >= 0.0 and float(adv.max()) <= 1.0
    if attack.eps is not None:
        assert float((adv - images).abs().max()) <= attack.eps + 1e-6
    if ATTACKS.get(name).family.name in ("metric", "noise", "occlusion"):
        assert not torch.equal(adv, images)  # these always change the image (classification skips unmatched ids)
    if attack.uses_labels:
        assert len(seen) == 1 and torch.equal(seen[0], pids)
    else:
        assert seen == [None]


@pytest.mark.parametrize("name", ALL)
def test_deterministic_under_seed_and_batching(name: str, tiny_split: TinySplit, batch: tuple) -> None:
    """Same seed, same output; and the same output when the batch is split differently.

    In float64, so that the backend's batch-size-dependent rounding (~1e-6 in float32) cannot
    flip the sign of a gradient entry: any difference left is the attack's own randomness.
    """
    model = make_tiny_model().double().eval()
    images, pids, index = (t[:5] for t in batch)
    images = images.double()
    attack = build(name, model, tiny_split, seed=7, dtype=torch.float64,
                   **({"batch_invariant": True} if "batch_invariant" in ATTACKS.get(name).defaults else {}))
    first = run(attack, images, pids, index)
    again = run(attack, images, pids, index)
    split = torch.cat([run(attack, images[s], pids[s], index[s]) for s in (slice(0, 2), slice(2, 5))])
    order = torch.tensor([3, 0, 4, 2, 1])
    shuffled = run(attack, images[order], pids[order], index[order])
    assert torch.equal(first, again)
    assert torch.equal(first, split)
    assert torch.equal(first[order], shuffled)


@pytest.mark.parametrize("name", ["sma", "lta", "noise", "erasing", "npo", "ntp", "fmap-erase", "fmap-noise", "pgd"])
def test_seed_changes_random_draws(name: str, model: nn.Module, tiny_split: TinySplit, batch: tuple) -> None:
    images, pids, index = batch
    a = run(build(name, model, tiny_split, seed=1), images, pids, index)
    b = run(build(name, model, tiny_split, seed=2), images, pids, index)
    assert not torch.equal(a, b)


@pytest.mark.parametrize("name", ALL)
def test_model_mode_is_checked_and_restored(name: str, tiny_split: TinySplit, batch: tuple) -> None:
    images, pids, index = batch
    model = make_tiny_model().eval()
    attack = build(name, model, tiny_split)
    run(attack, images, pids, index)
    assert not any(m.training for m in model.modules())

    layer = model.get_submodule("backbone.layer2").train()
    with pytest.raises(ModelModeError, match="train mode"):
        run(attack, images, pids, index)
    assert layer.training and not model.head.training  # the refusal changed nothing
    model.eval()

    with pytest.raises(ParameterError, match=r"\[0,1\]"):
        run(attack, images * 2, pids, index)
    with pytest.raises(ParameterError, match="float"):
        run(attack, (images * 255).to(torch.uint8), pids, index)


def _aps(model: nn.Module, split: TinySplit, query_feats: torch.Tensor) -> np.ndarray:
    """Per-query AP of the valid queries."""
    with torch.no_grad():
        gf = model(split.gallery)
    dist = compute_distance(query_feats, gf, "cosine")
    r = evaluate_rank(dist, split.q_pids, split.g_pids, split.q_camids, split.g_camids, 10)
    return np.asarray(r.ap)[np.asarray(r.valid)]


# Paper defaults (15 steps for the metric attacks), but fewer queries for the query-hungry ones.
# The fixture model is trained to ~50% clean mAP.
MAP_PARAMS = {"n_queries": 30, "stride": 20, "batch_invariant": False}


@pytest.mark.parametrize("name", ALL)
def test_attack_does_not_raise_map(name: str, tiny_trained_model: nn.Module, tiny_split: TinySplit) -> None:
    """An optimised attack never raises mAP. A random perturbation (noise, random occlusion, a
    random feature-map region) moves each query's AP up or down by chance, so for those the claim
    that holds is statistical: the mean paired change of per-query AP is not above two standard
    errors (a one-sided test that a harmless-looking draw fails about 2% of the time; on another
    machine's draw the noise cell measured +0.5 pp with a 3 pp resolution of one query in 32)."""
    model = tiny_trained_model
    index = torch.arange(len(tiny_split.query))
    with torch.no_grad():
        clean = _aps(model, tiny_split, model(tiny_split.query))
    params = {k: v for k, v in MAP_PARAMS.items() if k in ATTACKS.get(name).defaults}
    attack = create_attack(name, model, **params)
    attack.set_context(make_context(model, tiny_split))
    if isinstance(attack, FeatureMapAttack):
        feats = attack.embed(tiny_split.query, index)
    else:
        with torch.no_grad():
            feats = model(attack(tiny_split.query, tiny_split.q_pids, index))
    attacked = _aps(model, tiny_split, feats)
    assert clean.mean() > 0.3, f"the fixture model should be trained (clean mAP {clean.mean():.3f})"
    diff = attacked - clean
    if ATTACKS.get(name).family.optimised:
        assert diff.mean() <= 1e-9, (name, clean.mean(), attacked.mean())
    else:
        stderr = diff.std(ddof=1) / np.sqrt(len(diff))
        assert diff.mean() <= 2 * stderr + 1e-9, (name, clean.mean(), attacked.mean(), stderr)


# ---------------------------------------------------------------------------------------------
# Metric attacks
# ---------------------------------------------------------------------------------------------


def test_sma_needs_its_random_start(model: nn.Module, tiny_split: TinySplit, batch: tuple) -> None:
    images, _, index = batch
    with torch.no_grad():
        clean = F.normalize(model(images), dim=1)

    still = build("sma", model, tiny_split, random_start=False, steps=3)
    adv = still(images, index=index)
    assert torch.equal(adv, images)  # the gradient at delta = 0 is exactly zero
    assert still.grad_stats["grad_zero_image_frac"] == 1.0

    moving = build("sma", model, tiny_split, steps=3)
    adv = moving(images, index=index)
    with torch.no_grad():
        moved = 1 - (F.normalize(model(adv), dim=1) * clean).sum(dim=1)
    assert bool((moved > 1e-4).all())
    assert moving.grad_stats["grad_zero_image_frac"] == 0.0


def test_lta_guide_is_fresh_per_element_and_iteration(model: nn.Module, tiny_split: TinySplit,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    images = torch.rand(4, 3, 64, 32, generator=torch.Generator().manual_seed(0))  # gray(x) != x anywhere
    attack = build("lta", model, tiny_split, steps=4)
    refs: list[torch.Tensor] = []
    inner = attack.reference
    def recording(x: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
        refs.append(inner(x, gens))
        return refs[-1]

    monkeypatch.setattr(attack, "reference", recording)
    attack(images, index=torch.arange(4))
    assert len(refs) == 4
    regions = torch.stack([(r != images).any(dim=1) for r in refs])  # (iteration, element, H, W)
    assert bool(regions.flatten(2).any(dim=2).all())  # every element has a gray rectangle, every time
    for t in range(4):
        assert len({tuple(m.flatten().tolist()) for m in regions[t]}) == 4  # differs across elements
    for i in range(4):
        assert len({tuple(regions[t, i].flatten().tolist()) for t in range(4)}) == 4  # and across iterations


def test_guides_drive_mifgsm_away_from_true_matches(model: nn.Module, tiny_split: TinySplit, batch: tuple) -> None:
    images, pids, index = batch
    attack = build("mifgsm", model, tiny_split, steps=5)
    ctx = attack.context
    adv = attack(images, pids, index)
    with torch.no_grad():
        g = F.normalize(ctx.guide_feats, dim=1)
        match = (pids.unsqueeze(1) == ctx.guide_pids.unsqueeze(0)).float()
        before = (match * (2 - 2 * F.normalize(model(images), dim=1) @ g.T)).sum(1)
        after = (match * (2 - 2 * F.normalize(model(adv), dim=1) @ g.T)).sum(1)
    assert bool((after > before).all())


def test_same_camera_guides_are_dropped_on_request(model: nn.Module, tiny_split: TinySplit, batch: tuple) -> None:
    images, pids, index = batch
    attack = build("mifgsm", model, tiny_split, same_camera_guides=False)
    s, n = attack.guide_sums(pids, index, images, same_camera=False)
    _, n_all = attack.guide_sums(pids, index, images, same_camera=True)
    gp, gc = tiny_split.g_pids, tiny_split.g_camids
    expected = [int(((gp == p) & (gc != c)).sum()) for p, c in zip(pids, tiny_split.q_camids[index], strict=True)]
    assert n.tolist() == expected and bool((n <= n_all).all()) and bool((n < n_all).any())
    attack.context.camids = None
    with pytest.raises(ParameterError, match="context.camids"):
        attack(images, pids, index)


def test_missing_context_is_a_clear_error(model: nn.Module, batch: tuple) -> None:
    images, pids, index = batch
    with pytest.raises(ParameterError, match="did not provide context.guide_feats"):
        create_attack("mifgsm", model)(images, pids, index)
    with pytest.raises(ParameterError, match="needs the pids"):
        create_attack("fna", model)(images, None, index)


class _RandomDefense(nn.Module):
    """A randomised input transformation in front of the model; counts its forward passes."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.model((x + 0.05 * torch.randn(x.shape, generator=self.gen)).clamp(0, 1))


def test_eot_averages_fresh_draws(model: nn.Module, tiny_split: TinySplit, batch: tuple) -> None:
    images, pids, index = batch
    defended = _RandomDefense(model).eval()
    attack = build("sma", defended, tiny_split, eot=3, steps=2)
    defended.calls = 0
    attack(images, index=index)
    assert defended.calls == 1 + 3 * 2  # the clean feature, then eot passes per step

    # With a deterministic model the average of eot passes is the plain gradient.
    plain = build("mifgsm", model, tiny_split)
    averaged = build("mifgsm", model, tiny_split, eot=3)
    loss = plain.guide_loss(images, pids, index)
    assert torch.allclose(plain.gradient(images, loss), averaged.gradient(images, loss), atol=1e-6)


def test_grad_stats_accumulate_per_step(model: nn.Module, tiny_split: TinySplit, batch: tuple) -> None:
    images, pids, index = batch
    attack = build("mifgsm", model, tiny_split, steps=3)
    attack(images[:4], pids[:4], index[:4])
    attack(images[4:], pids[4:], index[4:])
    stats = attack.grad_stats
    assert stats["grad_steps"] == 3 and len(stats["grad_mean_abs_per_step"]) == 3
    assert 0.0 <= stats["grad_zero_frac"] < 1.0 and stats["grad_mean_abs_min"] > 0
    attack.reset_grad_stats()
    assert attack.grad_stats["grad_steps"] == 0


# ---------------------------------------------------------------------------------------------
# Classification wrapper
# ---------------------------------------------------------------------------------------------


def test_gallery_classifier_logits_are_scaled_negative_cosine_distance(model: nn.Module) -> None:
    x = torch.rand(3, 3, 64, 32)
    protos = F.normalize(torch.randn(5, 16), dim=1)
    clf = GalleryClassifier(model, scale=30.0)
    clf.prototypes = protos
    with torch.no_grad():
        expected = -30.0 * compute_distance(model(x), protos, "cosine")
        assert torch.allclose(clf(x), expected, atol=1e-5)


def test_classification_leaves_unknown_identities_and_cw_has_no_eps(model: nn.Module, tiny_split: TinySplit,
                                                                    batch: tuple) -> None:
    images, pids, index = batch
    attack = build("pgd", model, tiny_split)
    unknown = pids.clone()
    unknown[:2] = 999
    adv = attack(images, unknown, index)
    assert torch.equal(adv[:2], images[:2]) and not torch.equal(adv[2:], images[2:])
    assert create_attack("cw", model).eps is None


# ---------------------------------------------------------------------------------------------
# Occlusions and feature maps
# ---------------------------------------------------------------------------------------------


def test_aos_window_picks_the_worst_position(model: ReIDModel, tiny_split: TinySplit, batch: tuple) -> None:
    images, _, index = batch
    images, index = images[:4], index[:4]
    attack = build("aos-window", model, tiny_split)
    adv = attack(images, index=index)
    h, w = images.shape[-2:]
    dh, dw, tops, lefts = window_grid(h, w, 0.1, attack.stride)
    assert dh == dw == round(math.sqrt(0.1 * h * w)) and len(tops) * len(lefts) > 30
    assert attack.last_heatmaps.shape == (4, len(tops), len(lefts)) and attack.last_positions.shape == (4, 2)
    fill = mean_colour(model, images).view(1, 3, 1, 1)
    masks, _, _ = attack.masks(h, w, images.device)
    with torch.no_grad():
        scores = attack.scores(images, masks, fill)
    for i, (top, left) in enumerate(attack.last_positions.tolist()):
        k = tops.index(top) * len(lefts) + lefts.index(left)
        assert scores[i, k] == scores[i].max()
        window = adv[i, :, top : top + dh, left : left + dw]
        assert torch.allclose(window, fill[0].expand_as(window))  # zero after normalisation
        assert torch.equal(adv[i, :, top + dh :], images[i, :, top + dh :])
    attack.chunk = 7  # the same answer in any chunking of the (image, position) pairs
    assert torch.allclose(attack(images, index=index), adv)
    # Batch by batch, the maps collect in index order (what the harness stores per query).
    maps = attack.last_heatmaps
    attack.set_context(attack.context)
    attack(images[2:], index=index[2:])
    attack(images[:2], index=index[:2])
    assert torch.allclose(attack.last_heatmaps, maps)


def test_aos_window_becomes_a_band_when_the_square_does_not_fit() -> None:
    dh, dw, tops, lefts = window_grid(256, 128, 0.6, 10)
    assert (dw, lefts) == (128, [0]) and dh == round(0.6 * 256) and len(tops) == (256 - dh) // 10 + 1


@pytest.mark.parametrize("area", [0.05, 0.3, 0.6])
def test_npo_pastes_a_corner_strip_of_the_given_area(area: float, model: nn.Module, tiny_split: TinySplit) -> None:
    images = torch.rand(8, 3, 64, 32, generator=torch.Generator().manual_seed(1))
    attack = build("npo", model, tiny_split, area=area)
    adv = attack(images, index=torch.arange(8))
    h, w = images.shape[-2:]
    for i in range(8):
        changed = (adv[i] != images[i]).any(dim=0).nonzero()
        top, left = changed.min(dim=0).values.tolist()
        bottom, right = (changed.max(dim=0).values + 1).tolist()
        strip = (bottom - top, right - left)
        assert strip in ((h, round(area * w)), (round(area * h), w)), strip
        assert top in (0, h - strip[0]) and left in (0, w - strip[1])  # anchored at a corner
    attack.context.occluder_bank = None
    with pytest.raises(ParameterError, match="context.occluder_bank"):
        attack(images, index=torch.arange(8))


@pytest.mark.parametrize("area", [0.05, 0.3, 0.6, 0.9])
def test_erasing_occludes_the_given_area(area: float, model: ReIDModel, tiny_split: TinySplit) -> None:
    images = torch.rand(16, 3, 64, 32, generator=torch.Generator().manual_seed(2))
    adv = build("erasing", model, tiny_split, area=area)(images, index=torch.arange(16))
    fill = mean_colour(model, images).view(1, 3, 1, 1)
    erased = (adv == fill).all(dim=1).float().mean(dim=(1, 2))
    assert torch.allclose(erased, torch.full_like(erased, area), atol=0.03)


@pytest.mark.parametrize("name", FMAP)
def test_feature_map_region_has_the_given_area(name: str, model: nn.Module) -> None:
    fmap = torch.rand(6, 16, 16, 8, generator=torch.Generator().manual_seed(3)) + 1.0
    attack = create_attack(name, model, area=0.25)
    out = attack.hook(fmap, torch.arange(6))
    assert out.shape == fmap.shape
    if name == "fmap-transform":
        return  # source and target may overlap or coincide; the region size is the sampler's
    frac = (out != fmap).any(dim=1).float().mean(dim=(1, 2))
    assert torch.allclose(frac, torch.full_like(frac, 0.25), atol=0.04)


def test_feature_map_attacks_need_a_reid_model() -> None:
    attack = create_attack("fmap-erase", nn.Sequential(nn.Flatten()))
    with pytest.raises(ParameterError, match="feature_map"):
        attack.embed(torch.rand(2, 3, 8, 4))


# ---------------------------------------------------------------------------------------------
# Seeding
# ---------------------------------------------------------------------------------------------


def test_image_seeds_are_distinct_per_seed_stream_and_index() -> None:
    seeds = {image_seed(s, n, i) for s in range(3) for n in ("sma", "lta") for i in range(100)}
    assert len(seeds) == 600 and all(0 <= s < 2**63 for s in seeds)


def test_metric_attacks_work_inside_no_grad(model: nn.Module, tiny_split: TinySplit, batch: tuple) -> None:
    images, pids, index = batch
    attack = build("mifgsm", model, tiny_split)
    with torch.no_grad():  # the harness may call attacks from inside no_grad
        adv = attack(images, pids, index)
    assert not torch.equal(adv, images)


def test_input_attack_index_must_match_the_batch(model: nn.Module, batch: tuple) -> None:
    images, _, _ = batch
    attack = create_attack("noise", model)
    assert isinstance(attack, InputAttack)
    with pytest.raises(ParameterError, match="index has 3 entries for a batch of 8"):
        attack(images, index=torch.arange(3))


def test_images_without_guides_are_not_counted_as_masked_gradients(tiny_trained_model: nn.Module, tiny_split: TinySplit) -> None:
    """A gallery distractor has no same-id query to push from: no loss, which is not gradient masking."""
    model = tiny_trained_model
    attack = create_attack("mifgsm", model, steps=2)
    attack.set_context(make_context(model, tiny_split))
    labels = tiny_split.q_pids.clone()
    labels[:3] = 10_000  # identities absent from the gallery: no guides
    attack(tiny_split.query, labels, torch.arange(len(labels)))
    stats = attack.grad_stats
    assert stats["grad_no_objective_images"] == 3
    assert stats["grad_zero_image_frac"] == 0.0, "only images with guides are judged"
