"""Models: parametrised over the registry, on tiny networks and random or tiny synthetic data."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from reidbench.errors import CheckpointError, ParameterError, UnknownNameError
from reidbench.models import MODELS, create_network, list_models
from reidbench.models.checkpoints import read_state_dict, save_checkpoint
from reidbench.ops import (
    fmap_erase,
    fmap_noise,
    fmap_transform,
    perturb_fmap,
    sample_region,
    sample_transform_pair,
)
from reidbench.train import RECIPES, create_recipe
from reidbench.train.recipes.etndnet import parse_branches
from reidbench.train.recipes.igoas import occlusion_area
from reidbench.train.recipes.jad import channel_fusion, jad_augment
from reidbench.train.trainer import TrainConfig, TrainContext, lr_factor, pk_batches, reid_loss
from reidbench.zoo import create_model

from .conftest import make_tiny_model

NAMES = MODELS.names()


def test_registry_lists_the_defenses_next_to_the_baseline() -> None:
    assert {"baseline", "etndnet", "igoas", "jad", "aos"} <= set(NAMES)
    cards = list_models()
    assert all(c.deviations for c in cards), "every card writes down its deviations"
    assert [c.name for c in list_models("e*")] == ["etndnet"]
    assert [c.name for c in list_models(method="JAD")] == ["jad"]


def test_unknown_model_is_one_clear_error() -> None:
    with pytest.raises(UnknownNameError, match="unknown model 'basline'.*Did you mean baseline"):
        create_model("basline", checkpoint=None)


def test_duplicate_registration_is_an_error() -> None:
    from reidbench.models.registry import register_model

    with pytest.raises(ValueError, match="already registered"):
        register_model(MODELS.get("baseline"))


@pytest.mark.parametrize("name", NAMES)
def test_forward_shape_no_nan_and_eval_mode(name: str) -> None:
    model = make_tiny_model(name=name)
    assert not model.training, "create_model returns an eval-mode model"
    x = torch.rand(3, 3, 64, 32)
    f = model(x)
    assert f.shape == (3, model.feat_dim)
    assert torch.isfinite(f).all()
    fmap = model.feature_map(x)
    assert fmap.shape[:2] == (3, model.feat_dim)
    assert torch.allclose(model.bare().head(fmap), model.bare()(x), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_trainable_parameter(name: str) -> None:
    model = make_tiny_model(name=name).train()
    out = model.forward_train(torch.rand(8, 3, 64, 32))
    loss = torch.nn.functional.cross_entropy(out.logits, torch.arange(8) % 4) + out.global_feat.pow(2).mean()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, f"no gradient reached {missing}"
    assert not model.head.bnneck.bias.requires_grad, "the BN neck's bias is frozen"


def _ctx(model: torch.nn.Module, recipe: object, images: torch.Tensor, labels: torch.Tensor) -> TrainContext:
    cfg = TrainConfig(lr=3e-3, triplet_weight=1.0, epochs=10, warmup_epochs=0, milestones=())
    ctx = TrainContext(cfg=cfg, model=model, images=(images * 255).to(torch.uint8), labels=labels,
                       camids=torch.zeros_like(labels), num_classes=int(labels.max()) + 1, device=torch.device("cpu"),
                       gen=torch.Generator().manual_seed(0))  # fmt: skip
    ctx.optimizers = recipe.optimizers(ctx)  # type: ignore[attr-defined]
    return ctx


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ("aos", "apd", "aos-hard1", "aos-random")])
def test_one_recipe_step_lowers_the_loss_on_a_fixed_batch(name: str) -> None:
    torch.manual_seed(0)
    model = make_tiny_model(name=name, num_classes=4).train()
    recipe = create_recipe(name)
    x = torch.rand(16, 3, 64, 32)
    y = torch.arange(16) % 4
    ctx = _ctx(model, recipe, x, y)

    def clean_loss() -> float:
        with torch.no_grad():
            return float(reid_loss(model.forward_train(x), y, ctx.cfg))

    before = clean_loss()
    for _ in range(3):
        xb = recipe.pre_augment(x, torch.arange(16), ctx)
        recipe.step(recipe.augment(xb, torch.arange(16), ctx), y, ctx)
    assert clean_loss() < before


def test_aos_runs_all_three_stages_on_tiny_data(tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    from reidbench.data import relabel
    from reidbench.data.images import load_images
    from reidbench.train.recipes.aos import AOSRecipe
    from reidbench.train.trainer import train

    samples, _ = relabel(tiny_dataset.train[:64])
    images = load_images(samples, (64, 32))
    labels = torch.tensor([s.pid for s in samples])
    labels = torch.unique(labels, return_inverse=True)[1]
    model = make_tiny_model(num_classes=int(labels.max()) + 1, name="aos")
    recipe = AOSRecipe(variant="hard1", p=1.0)
    cfg = TrainConfig(lr=3e-3, p=4, k=4, epochs=1, warmup_epochs=0, milestones=())
    train(model, recipe, images, labels, torch.zeros_like(labels), cfg, progress=False)
    assert recipe.maps is not None and recipe.maps.shape[0] == len(images)
    # hard1 with p=1 occludes every image at its argmax position with the mean colour
    ctx = _ctx(model, recipe, images.float() / 255, labels)
    out = recipe.pre_augment(images[:4].float() / 255, torch.arange(4), ctx)
    changed = (out != images[:4].float() / 255).any(dim=1)
    assert changed.any(dim=(1, 2)).all()
    area = changed.float().mean(dim=(1, 2))
    assert torch.all(area <= 0.1 + 0.05), "the square covers about 10% of the image"


def test_etndnet_perturbations_shapes_and_regions() -> None:
    gen = torch.Generator().manual_seed(0)
    f = torch.rand(4, 8, 16, 8) + 1.0  # strictly positive so erased cells are identifiable
    for _ in range(50):
        r = sample_region(16, 8, gen)
        frac = r.height * r.width / (16 * 8)
        assert 0 < r.height <= 16 and 0 < r.width <= 8 and frac <= 0.4 + 0.08
        e = fmap_erase(f, r)
        ys, xs = r.slices()
        assert e.shape == f.shape and (e[:, :, ys, xs] == 0).all()
        assert (e != 0).sum() == f.numel() - f.shape[0] * f.shape[1] * r.height * r.width
    src, dst = sample_transform_pair(16, 8, gen)
    t = fmap_transform(f, src, dst)
    assert torch.equal(t[:, :, dst.slices()[0], dst.slices()[1]], f[:, :, src.slices()[0], src.slices()[1]])
    n = fmap_noise(f, r, gen, "replace")
    assert ((n[:, :, ys, xs] >= 0) & (n[:, :, ys, xs] < 1)).all(), "noise replaces the region with U(0,1)"
    m = fmap_noise(f, r, gen, "multiply")
    assert (m[:, :, ys, xs] <= f[:, :, ys, xs]).all()
    # one region for the whole batch, as in the paper
    p = perturb_fmap(f, "erase", gen)
    zero = p == 0
    assert all(torch.equal(zero[0, 0], zero[i, c]) for i in range(4) for c in range(8))


def test_etndnet_ablation_option_covers_the_papers_names() -> None:
    assert parse_branches("ED") == ("erase",)
    assert parse_branches("TND") == ("transform", "noise")
    assert parse_branches("ETND") == ("erase", "transform", "noise")
    assert parse_branches("ED+ND") == ("erase", "noise")
    with pytest.raises(ParameterError, match="branches"):
        parse_branches("XD")


def test_igoas_schedule_grows_then_caps() -> None:
    areas = [occlusion_area(e, 90) for e in range(90)]
    assert areas[0] == pytest.approx(0.1)
    assert all(a <= b + 1e-9 for a, b in zip(areas[:55], areas[1:55], strict=False))
    assert areas[60] == pytest.approx(1 / 3) and areas[89] == pytest.approx(1 / 3)
    assert occlusion_area(15, 30) == pytest.approx(occlusion_area(45, 90)), "the schedule maps onto fewer epochs"


def test_jad_augmentations_keep_shape_and_range() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 64, 32)
    out = jad_augment(x, gen)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    changed = (out != x).flatten(1).any(1).float().mean()
    assert 0.05 < changed < 0.5, "about 22% of the images are transformed"
    cf = channel_fusion(x[0], x[0, :1], gen)
    assert cf.shape == x[0].shape


def test_jad_has_circuitous_scaling_in_its_inference_path() -> None:
    on = make_tiny_model(name="jad")
    assert on.input_transform is not None
    off = create_model("jad", checkpoint=None, backbone="resnet_test", num_classes=24, input_size=(64, 32),
                       feat_dim=16, options={"cs": False})  # fmt: skip
    assert off.input_transform is None
    off.load_state_dict(on.state_dict())
    x = torch.rand(2, 3, 64, 32)
    assert not torch.allclose(on(x), off(x)), "CS changes the features"
    assert torch.allclose(on.bare()(x), off(x)), "bare() strips CS and shares the weights"
    with pytest.raises(ParameterError, match="no option 'bogus'"):
        create_model("jad", checkpoint=None, options={"bogus": 1})


def test_jad_inference_defense_is_declared_by_the_card_and_installed_above_models() -> None:
    from reidbench.defenses import CircuitousScaling
    from reidbench.models import inference_defense

    assert MODELS.get("jad").card.inference_defense == "cs"
    assert inference_defense("jad") == "cs" and inference_defense("jad", {"cs": False}) is None
    assert all(inference_defense(n) is None for n in NAMES if n != "jad")
    kw = dict(checkpoint=None, backbone="resnet_test", num_classes=24, input_size=(64, 32), feat_dim=16)
    net = create_network("jad", **kw)  # type: ignore[arg-type]
    assert net.input_transform is None and net.options == {"cs": True}, "the network alone carries no defense"
    model = create_model("jad", **kw)  # type: ignore[arg-type]
    cs = model.input_transform
    assert isinstance(cs, CircuitousScaling) and not cs.training
    assert cs.plan((64, 32)) == CircuitousScaling(input_size=(64, 32)).plan((64, 32)) == [(28, 13), (55, 25), (28, 13), (64, 32)]
    for name in NAMES:
        if name != "jad":
            assert create_model(name, **kw).input_transform is None  # type: ignore[arg-type]


@pytest.mark.parametrize("name", NAMES)
def test_every_card_names_a_registered_recipe(name: str) -> None:
    card = MODELS.get(name).card
    assert card.recipe in RECIPES
    assert type(create_recipe(name)) is RECIPES.get(card.recipe)
    assert create_recipe(name).name == card.recipe


def test_a_new_model_trains_with_an_existing_recipe_by_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from reidbench.models import ModelEntry

    card = MODELS.get("etndnet").card.replace(name="etndnet-ed")
    monkeypatch.setitem(MODELS._entries, "etndnet-ed", ModelEntry(card=card))  # no recipe module of its own
    recipe = create_recipe("etndnet-ed", branches="ED")
    assert recipe.name == "etndnet" and recipe.kinds == ("erase",)
    card = card.replace(name="nowhere", recipe="nope")
    monkeypatch.setitem(MODELS._entries, "nowhere", ModelEntry(card=card))
    with pytest.raises(UnknownNameError, match="names recipe 'nope'"):
        create_recipe("nowhere")


def test_checkpoint_round_trip_and_card(tmp_path: Path) -> None:
    model = make_tiny_model()
    card = save_checkpoint(model, model.card, tmp_path / "m.safetensors")
    assert card.sha256 and (tmp_path / "m.json").is_file()
    again = create_model("baseline", checkpoint=tmp_path / "m.safetensors")
    x = torch.rand(2, 3, 64, 32)
    assert torch.allclose(model(x), again(x))
    assert again.card.backbone == "resnet_test" and again.card.sha256 == card.sha256


def test_mismatched_checkpoint_lists_missing_and_unexpected_keys(tmp_path: Path) -> None:
    state = {k: v.clone() for k, v in make_tiny_model().state_dict().items()}
    state.pop("head.bnneck.weight")
    state["extra.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError) as exc:
        create_model("baseline", checkpoint=tmp_path / "bad.safetensors", backbone="resnet_test", input_size=(64, 32))
    msg = str(exc.value)
    assert "missing keys: head.bnneck.weight" in msg and "unexpected keys: extra.weight" in msg
    assert "\n" not in msg


def test_shape_mismatch_is_refused(tmp_path: Path) -> None:
    save_file({k: v.contiguous() for k, v in make_tiny_model(backbone="resnet_test").state_dict().items()},
              str(tmp_path / "small.safetensors"))  # fmt: skip
    with pytest.raises(CheckpointError, match="shape mismatch"):
        create_model("baseline", checkpoint=tmp_path / "small.safetensors", backbone="resnet_tiny")


def test_loading_never_runs_code_from_a_checkpoint(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"state_dict": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        read_state_dict(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


def test_plain_weights_only_state_dict_loads(tmp_path: Path) -> None:
    model = make_tiny_model()
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "w.pth")
    again = create_model("baseline", checkpoint=tmp_path / "w.pth", backbone="resnet_test", input_size=(64, 32))
    assert torch.allclose(model(torch.ones(1, 3, 64, 32)), again(torch.ones(1, 3, 64, 32)))


def test_external_model_factory() -> None:
    m = create_model("tests.external_model:make")
    assert m(torch.rand(2, 3, 64, 32)).shape == (2, 5)
    with pytest.raises(Exception, match="cannot import tests.nowhere for --model"):
        create_model("tests.nowhere:make")


def test_schedule_and_sampler() -> None:
    cfg = TrainConfig().scaled(30)
    assert lr_factor(0, cfg) == pytest.approx(0.01)
    assert lr_factor(cfg.warmup_epochs, cfg) == 1.0
    assert lr_factor(cfg.milestones[1] + 0.1, cfg) == pytest.approx(0.01)
    labels = torch.arange(40) // 5
    batches = pk_batches(labels, p=4, k=4, gen=torch.Generator().manual_seed(0))
    for b in batches:
        counts = torch.bincount(labels[b])
        assert len(b) == 16 and set(counts[counts > 0].tolist()) == {4}


def test_training_is_deterministic_under_a_seed(tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    from reidbench.data import relabel
    from reidbench.data.images import load_images
    from reidbench.train.recipes.baseline import BaselineRecipe
    from reidbench.train.trainer import train

    samples, _ = relabel(tiny_dataset.train[:48])
    images = load_images(samples, (64, 32))
    labels = torch.unique(torch.tensor([s.pid for s in samples]), return_inverse=True)[1]
    cfg = TrainConfig(lr=3e-3, p=4, k=4, epochs=2, warmup_epochs=0, milestones=(), seed=3)
    a, b = make_tiny_model(num_classes=int(labels.max()) + 1), None
    b = copy.deepcopy(a)
    train(a, BaselineRecipe(), images, labels, labels, cfg, progress=False)
    train(b, BaselineRecipe(), images, labels, labels, cfg, progress=False)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), n


#: What the bit-for-bit guarantee is conditional on, as recorded beside the shipped checkpoint.
REPRO_KEYS = ("torch", "python", "threads", "device", "cpu_capability", "dataset_fingerprint")


@pytest.mark.slow
def test_shipped_baseline_is_reproduced_bit_for_bit_by_reidbench_train(tmp_path: Path) -> None:
    """`reidbench train --model baseline` on synthetic-mini retraces the shipped checkpoint exactly.

    To stay cheap the test trains the first 10 of the 60 epochs and compares the weights' digest
    with the one the shipped card records for epoch 10 (``experiments/embedded_default.py ship``
    writes it from the learning-curve checkpoint of the same run). Bit-for-bit holds given the
    same torch, python, thread count (set here from the record), device, CPU kernel set (torch's
    CPU capability: AVX512 and AVX2 order reductions differently) and dataset. When one of those
    differs, the bytes may legitimately differ: the test then names it and checks what must still
    hold, the epoch-10 model's clean mAP within 1.5 pp of the recorded one.
    """
    import platform

    from reidbench.data import load_dataset
    from reidbench.models.checkpoints import read_card_json, save_checkpoint, state_digest
    from reidbench.models.registry import shipped_checkpoint
    from reidbench.train.training import train_registered

    _, shipped = read_card_json(shipped_checkpoint("baseline"))
    want, want_map = shipped["state_sha256_epoch10"], shipped["mAP_epoch10"]
    early = tmp_path / "baseline-e10.safetensors"

    class Stop(Exception):
        pass

    def stop_at_10(epoch: int, model: torch.nn.Module, card) -> None:  # type: ignore[no-untyped-def]
        if epoch == 10:
            save_checkpoint(model, card, early)
            raise Stop

    threads = torch.get_num_threads()
    torch.set_num_threads(int(shipped["threads"]))
    try:
        with pytest.raises(Stop):
            train_registered("baseline", out=tmp_path / "unused.safetensors", progress=False, on_epoch_end=stop_at_10)
        now = {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
               "device": "cpu", "cpu_capability": torch.backends.cpu.get_cpu_capability(),
               "dataset_fingerprint": load_dataset("synthetic-mini").fingerprint}  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    from reidbench.models.checkpoints import read_state_dict

    got = state_digest(read_state_dict(early))
    if got == want:
        return
    differ = {k: (shipped.get(k), now.get(k)) for k in REPRO_KEYS if shipped.get(k) != now.get(k)}
    assert differ, (
        f"the retrained epoch-10 weights ({got[:12]}) differ from the recorded ones ({want[:12]}) although "
        f"{', '.join(f'{k}={now.get(k)}' for k in REPRO_KEYS)} all match the shipped record: training is not deterministic"
    )
    early_map = _clean_map(early)
    assert abs(early_map - want_map) <= 1.5, (
        f"retrained on a different environment ({differ}): epoch-10 clean mAP {early_map:.2f} vs recorded {want_map:.2f}"
    )


def _clean_map(checkpoint: Path) -> float:
    from reidbench.data import load_dataset
    from reidbench.data.images import load_images, to_float
    from reidbench.eval import compute_distance, evaluate_rank
    from reidbench.zoo import create_model

    model = create_model("baseline", checkpoint=checkpoint)
    ds = load_dataset("synthetic-mini")
    q, g = ds.query, ds.gallery
    with torch.no_grad():
        qf = model(to_float(load_images(q, model.input_size)))
        gf = model(to_float(load_images(g, model.input_size)))
    ids = [torch.tensor([getattr(s, k) for s in ss]) for ss in (q, g) for k in ("pid",)]
    cams = [torch.tensor([s.camid for s in ss]) for ss in (q, g)]
    return 100 * evaluate_rank(compute_distance(qf, gf, "cosine"), ids[0], ids[1], cams[0], cams[1], 10).mAP


def test_imagenet_weights_option_loads_a_local_torchvision_state_dict(tmp_path: Path) -> None:
    """`--imagenet-weights PATH`: a torchvision ResNet state dict (fc dropped) loads into the trunk,
    the last stride is 1, and a missing or mismatched file is a CheckpointError naming it."""
    from torchvision.models import resnet18 as tv_resnet18

    from reidbench.models import backbones

    torch.manual_seed(1)
    ref = tv_resnet18(weights=None)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(ref.state_dict(), path)
    trunk, dim = backbones.resnet18(path)
    assert dim == 512
    assert torch.equal(trunk.layer4[1].conv2.weight, ref.layer4[1].conv2.weight)
    assert torch.equal(trunk.stem[0].weight, ref.conv1.weight)
    trunk.eval()
    with torch.no_grad():
        assert trunk(torch.rand(1, 3, 64, 32)).shape == (1, 512, 4, 2)  # stride 16, not 32
    with pytest.raises(CheckpointError, match="not found"):
        backbones.resnet18(tmp_path / "nope.pth")
    torch.save({"conv1.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="do not match the backbone"):
        backbones.resnet18(tmp_path / "bad.pth")


@pytest.mark.parametrize("values", ["continuous", "ties"])
def test_stem_max_pool_is_bit_identical_to_torchs(values: str) -> None:
    """The backbones' max-pool (channels_last on CPU without gradients, 1.23x faster forward
    passes) returns exactly what nn.MaxPool2d returns, even where a window holds several maxima,
    and the same pooling with a gradient routes exactly the same gradients."""
    from torch import nn

    from reidbench.models.backbones import MaxPool2d

    torch.manual_seed(0)
    shape = (8, 16, 64, 32)
    x = torch.rand(shape) if values == "continuous" else torch.randint(0, 3, shape).float()  # ties everywhere
    ref, ours = nn.MaxPool2d(3, stride=2, padding=1), MaxPool2d(3, stride=2, padding=1)
    with torch.no_grad():
        y_ref, y_ours = ref(x), ours(x)
    assert y_ours.is_contiguous() and torch.equal(y_ref, y_ours)
    # the channels_last kernel also picks the same argmax, so its gradients equal torch's
    grad_out = torch.randn_like(y_ref)
    grads = []
    for to_cl in (False, True):
        xi = x.clone().requires_grad_(True)
        y = ref(xi.contiguous(memory_format=torch.channels_last)) if to_cl else ref(xi)
        grads.append(torch.autograd.grad(y, xi, grad_out)[0])
    assert torch.equal(grads[0], grads[1])
