"""Input-transformation defenses, composition, BPDA and EOT."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from reidbench.defenses import (
    DEFENSES,
    CircuitousScaling,
    Defended,
    DefenseChain,
    create_defense,
    draw_seed,
    eot_gradient,
)
from reidbench.defenses import cs as cs_module
from reidbench.errors import ParameterError, UnknownNameError
from reidbench.models import ReIDModel, check_eval_mode

SIZE = (32, 16)


def images(b: int = 3, size: tuple[int, int] = SIZE, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, *size, generator=g)


class TinyNet(nn.Module):
    """A small smooth embedding network (no ReLU dead zones, so gradients are dense)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4 * 2, 8)
        self.input_size = SIZE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.conv(x))
        return self.fc(nn.functional.adaptive_avg_pool2d(h, (4, 2)).flatten(1))


def loss_fn(model: nn.Module, target: torch.Tensor):
    return lambda z: ((model(z) - target) ** 2).sum(dim=1)


def grad_of(fn, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(fn(x).sum(), x)
    return g


# --- every registered defense ------------------------------------------------------------------


@pytest.mark.parametrize("name", DEFENSES.names())
@pytest.mark.parametrize("size", [(32, 16), (40, 24)])
def test_shape_and_range(name: str, size: tuple[int, int]) -> None:
    x = images(size=size)
    x[0] = 0.0
    x[1] = 1.0  # the extremes, where resampling overshoots
    y = create_defense(name, input_size=size)(x)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.isfinite(y).all()
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("name", DEFENSES.names())
def test_registry_entry_matches_class(name: str) -> None:
    e = DEFENSES.get(name)
    d = create_defense(name)
    assert (d.random, d.differentiable, d.name) == (e.random, e.differentiable, name)
    sig = inspect.signature(e.cls.__init__).parameters
    assert all(sig[k].default == v for k, v in e.defaults.items())
    assert e.cls.__module__.startswith("reidbench.defenses.") and "Deviations" in inspect.getmodule(e.cls).__doc__
    assert e.description and "\n" not in e.description


@pytest.mark.parametrize("name", DEFENSES.names())
def test_deterministic_or_reproducible_under_seed(name: str) -> None:
    x = images()
    a, b = create_defense(name, seed=5), create_defense(name, seed=5)
    first = [a(x) for _ in range(3)]
    assert all(torch.equal(u, b(x)) for u in first)  # the same seed, the same sequence of draws
    a.reseed(5)
    assert torch.equal(a(x), first[0])
    if DEFENSES.get(name).random:
        assert not torch.equal(first[0], first[1])  # every forward draws afresh
        assert not torch.equal(create_defense(name, seed=6)(x), first[0])
    else:
        assert torch.equal(first[0], first[1])


@pytest.mark.parametrize("name", DEFENSES.names())
def test_refuses_other_input_sizes(name: str) -> None:
    with pytest.raises(ParameterError, match="built for 32x16"):
        create_defense(name, input_size=SIZE)(images(size=(40, 24)))


# --- circuitous scaling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "plan"),
    [
        ((256, 128), [(110, 50), (220, 100), (110, 50), (256, 128)]),
        ((128, 64), [(55, 25), (110, 50), (55, 25), (128, 64)]),
        ((64, 32), [(28, 13), (55, 25), (28, 13), (64, 32)]),  # 27.5 and 12.5 round up
        ((384, 192), [(165, 75), (330, 150), (165, 75), (384, 192)]),
    ],
)
def test_cs_sizes_scale_with_input(size, plan, monkeypatch: pytest.MonkeyPatch) -> None:
    cs = CircuitousScaling(input_size=size)
    assert cs.plan(size) == plan
    seen: list[tuple[int, int]] = []
    real = cs_module._resize

    def spy(x, s, mode, antialias):
        seen.append(tuple(s))
        assert (mode, antialias) == ("bicubic", True)
        return real(x, s, mode, antialias)

    monkeypatch.setattr(cs_module, "_resize", spy)
    y = cs(torch.rand(1, 3, *size))
    assert seen == plan and tuple(y.shape[-2:]) == size  # ends at the input size


def test_cs_step_matches_pil_bicubic() -> None:
    """The code's transforms.Resize(..., interpolation=3) is PIL BICUBIC; one CS step equals it."""
    x = images(1, (256, 128))
    ours = cs_module._resize(x, (110, 50), "bicubic", True)
    for c in range(3):
        im = Image.fromarray(x[0, c].numpy(), mode="F").resize((50, 110), Image.BICUBIC)
        pil = torch.from_numpy(np.array(im)).clamp(0, 1)
        assert torch.allclose(ours[0, c], pil, atol=1e-4)


def test_cs_parameters() -> None:
    cs = create_defense("cs", sizes="20x10,40x20", reference="64x32")
    assert cs.plan((128, 64)) == [(40, 20), (80, 40), (128, 64)]
    assert CircuitousScaling(sizes=[(20, 10)], reference=(64, 32)).plan((64, 32)) == [(20, 10), (64, 32)]
    with pytest.raises(ParameterError, match="sizes"):
        create_defense("cs", sizes="110by50")
    with pytest.raises(ParameterError, match="mode"):
        create_defense("cs", mode="lanczos")
    assert create_defense("cs", antialias="false").antialias is False  # as a command line passes it
    with pytest.raises(ParameterError, match="antialias"):
        create_defense("cs", antialias="maybe")


def test_cs_as_model_input_transform() -> None:
    torch.manual_seed(0)
    model = ReIDModel(nn.Conv2d(3, 4, 3, stride=2), feat_dim=4, num_classes=2, input_size=(64, 32)).eval()
    x = images(2, (64, 32))
    plain = model(x)
    model.input_transform = CircuitousScaling(input_size=model.input_size)
    with torch.no_grad():
        assert torch.allclose(model(x), model.bare()(CircuitousScaling()(x)))
        assert torch.allclose(model.bare()(x), plain)
        # A defense in front of JAD runs before its built-in CS; bare() drops both.
        d = Defended(model, create_defense("bitdepth"), bpda=True)
        assert torch.allclose(d(x), model(create_defense("bitdepth")(x)))
        assert torch.allclose(d.bare()(x), plain)
        assert d.input_size == (64, 32)


# --- composition and validation ----------------------------------------------------------------


def test_chain_applies_in_order_and_combines_flags() -> None:
    x = images()
    chain = create_defense("median+jpeg", quality=30)
    assert isinstance(chain, DefenseChain) and chain.name == "median+jpeg"
    manual = create_defense("jpeg", quality=30)(create_defense("median")(x))
    assert torch.equal(chain(x), manual)
    assert not torch.equal(create_defense(["jpeg", "median"], quality=30)(x), manual)
    assert (chain.random, chain.differentiable) == (False, False)
    assert (create_defense("cs+median").random, create_defense("cs+median").differentiable) == (False, True)
    rp = create_defense("cs + resize-pad")
    assert (rp.random, rp.differentiable) == (True, True)


def test_chain_is_reproducible_and_routes_prefixed_params() -> None:
    x = images()
    a = create_defense("resize-pad+jpeg+resize-pad", seed=3, **{"jpeg.quality": 10})
    b = create_defense("resize-pad+jpeg+resize-pad", seed=3, **{"jpeg.quality": 10})
    assert a.parts[1].quality == 10 and a.parts[0].seed != a.parts[2].seed
    assert torch.equal(a(x), b(x))
    a.reseed(9)
    b.reseed(9)
    assert torch.equal(a(x), b(x))


def test_validation_errors() -> None:
    with pytest.raises(UnknownNameError, match="jpg"):
        create_defense("jpg")
    with pytest.raises(UnknownNameError):
        create_defense("cs+nope")
    with pytest.raises(ParameterError, match="no parameter 'qualty'.*jpeg: quality"):
        create_defense("jpeg", qualty=50)
    with pytest.raises(ParameterError, match="no parameter 'jpeg.bits'"):
        create_defense("jpeg+bitdepth", **{"jpeg.bits": 3})
    with pytest.raises(ParameterError, match="malformed"):
        create_defense("jpeg++median")
    bad = [("jpeg", {"quality": 0}), ("jpeg", {"quality": "high"}), ("median", {"kernel_size": 4}),
           ("bitdepth", {"bits": 9}), ("bitdepth", {"bits": 2.5}), ("resize-pad", {"max_scale": 1.0}),
           ("resize-pad", {"pad_value": -1})]  # fmt: skip
    for name, params in bad:
        with pytest.raises(ParameterError) as info:
            create_defense(name, **params)
        msg = str(info.value)
        assert "\n" not in msg and name in msg and next(iter(params)) in msg


# --- BPDA ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["bitdepth", "jpeg"])
def test_bpda_passes_gradient_where_true_gradient_is_zero(name: str) -> None:
    model = TinyNet().eval()
    x = images()
    target = model(images(seed=1)).detach()
    defense = create_defense(name)
    true = grad_of(loss_fn(Defended(model, defense, bpda=False), target), x)
    assert torch.count_nonzero(true) == 0  # the staircase's true gradient: zero, not an error
    bpda = grad_of(loss_fn(Defended(model, defense, bpda=True), target), x)
    assert torch.count_nonzero(bpda) == bpda.numel()
    # Straight-through: exactly the model's gradient taken at the defended image.
    at_defended = grad_of(loss_fn(model, target), defense(x))
    assert torch.allclose(bpda, at_defended)
    with torch.no_grad():  # the forward value is the real defense, bit for bit
        assert torch.equal(Defended(model, defense, bpda=True)(x), model(defense(x)))


def test_bpda_keeps_true_gradients_through_differentiable_parts() -> None:
    model = TinyNet().eval()
    x = images()
    target = model(images(seed=1)).detach()
    chain = create_defense("cs+jpeg")
    got = grad_of(loss_fn(Defended(model, chain, bpda=True), target), x)
    # Expected: identity through JPEG, the true Jacobian of CS.
    xg = x.clone().requires_grad_(True)
    y = chain.parts[0](xg)
    g_y = grad_of(loss_fn(model, target), chain.parts[1](y.detach()))
    (expected,) = torch.autograd.grad(y, xg, g_y)
    assert torch.allclose(got, expected, atol=1e-6)
    # Identity through CS too (BPDA on the whole chain) would be a different gradient.
    assert not torch.allclose(got, grad_of(loss_fn(model, target), chain(x)), atol=1e-6)


# --- EOT -----------------------------------------------------------------------------------------


def test_eot_equals_plain_gradient_for_a_fixed_draw() -> None:
    model = TinyNet().eval()
    x = images()
    target = model(images(seed=1)).detach()
    deterministic = Defended(model, create_defense("cs"), bpda=True)
    fn = loss_fn(deterministic, target)
    assert torch.allclose(eot_gradient(fn, x, 5), grad_of(fn, x), atol=1e-6)

    random = Defended(model, create_defense("resize-pad"), bpda=True)

    def fixed(z: torch.Tensor) -> torch.Tensor:
        random.reseed(11)  # every evaluation sees the same draw
        return loss_fn(random, target)(z)

    assert torch.allclose(eot_gradient(fixed, x, 4), grad_of(fixed, x), atol=1e-6)


def test_eot_averages_over_fresh_draws() -> None:
    model = TinyNet().eval()
    x = images()
    target = model(images(seed=1)).detach()
    defended = Defended(model, create_defense("resize-pad+jpeg"), bpda=True)
    fn = loss_fn(defended, target)
    defended.reseed(7)
    per_draw = [grad_of(fn, x) for _ in range(4)]
    assert not torch.allclose(per_draw[0], per_draw[1])  # the draws differ
    defended.reseed(7)
    eot = eot_gradient(fn, x, 4)
    assert torch.allclose(eot, torch.stack(per_draw).mean(0), atol=1e-6)
    assert not torch.allclose(eot, per_draw[0])
    with pytest.raises(ParameterError):
        eot_gradient(fn, x, 0)


def test_defended_reseed_per_draw_and_modes() -> None:
    model = TinyNet()
    d = Defended(model.eval(), create_defense("cs+resize-pad"), bpda=True)
    check_eval_mode(d)  # a fresh defense does not put the pair in train mode
    assert d.random and d.differentiable
    d.eval()
    assert not model.training
    d.train()
    assert model.training
    d.eval()
    x = images()
    with torch.no_grad():
        d.reseed(draw_seed(0, 0))
        a = d(x)
        d.reseed(draw_seed(0, 1))
        b = d(x)
        d.reseed(draw_seed(0, 0))
        assert torch.equal(d(x), a) and not torch.equal(a, b)
    assert d.bare() is model  # no bare() on the model: the model itself


def test_cli_lists_defenses() -> None:
    from click.testing import CliRunner

    from reidbench.cli import main

    result = CliRunner().invoke(main, ["list", "defenses"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[2:] if line.strip()}
    assert set(lines) == set(DEFENSES.names())
    assert "yes" in lines["resize-pad"].split()[1] and "no (BPDA)" in lines["jpeg"]
    assert "quality=75" in lines["jpeg"] and "sizes=110x50,220x100,110x50" in lines["cs"]
