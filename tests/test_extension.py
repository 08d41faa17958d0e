"""docs/architecture.md promises that a new attack (in a new family), defense, dataset layout and
model each take one new module plus its registration call. These tests do exactly that: they
write the module a contributor would write into a temporary folder, import it, and use the
component through the ordinary public API, with no other file touched."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from reidbench.attack_types import FAMILIES
from reidbench.attacks import ATTACKS
from reidbench.data import DATASETS
from reidbench.defenses import DEFENSES
from reidbench.models import MODELS
from reidbench.models.backbones import BACKBONES


@pytest.fixture()
def plugin(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """Write a module into a temporary folder and import it; undo its registrations afterwards."""
    registries = [ATTACKS._entries, DEFENSES._entries, DATASETS._entries, MODELS._entries, FAMILIES, BACKBONES]
    before = [dict(r) for r in registries]
    sys.path.insert(0, str(tmp_path))
    names: list[str] = []

    def load(name: str, source: str) -> object:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        names.append(name)
        return importlib.import_module(name)

    yield load
    sys.path.remove(str(tmp_path))
    for n in names:
        sys.modules.pop(n, None)
    for reg, old in zip(registries, before, strict=True):
        reg.clear()
        reg.update(old)


ATTACK_MODULE = '''
    """A corner patch of constant colour: an attack in a family of its own."""
    import torch

    from reidbench.attack_types import Access, Budget, Family, Threat, register_family
    from reidbench.attacks import InputAttack, register_attack
    from reidbench.params import check_range

    PATCH = register_family(Family("patch", occludes=True))


    @register_attack("corner-patch", family=PATCH,
                     threat=Threat(Access.NONE, budget=Budget.AREA, scope="a grey square over the top-left corner"),
                     description="a grey square in the top-left corner")
    class CornerPatch(InputAttack):
        def __init__(self, model, side: float = 0.5) -> None:
            super().__init__(model, side=side)
            self.side = check_range(self.name, "side", side, 0.05, 1.0)

        def perturb(self, images, labels, index):
            out = images.clone()
            h, w = int(images.shape[2] * self.side), int(images.shape[3] * self.side)
            out[:, :, :h, :w] = 0.5
            return out
'''


def test_a_new_attack_family_is_one_module(plugin, tiny_ckpt: Path, tiny_dataset, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from reidbench.attacks import attack_params, create_attack
    from reidbench.eval.harness import AttackRequest, GridSpec, run_grid

    plugin("my_patch_attack", ATTACK_MODULE)
    assert attack_params("corner-patch") == {"side": 0.5}  # defaults read from the constructor
    with pytest.raises(Exception, match="side 2 is out of range"):
        create_attack("corner-patch", None, side=2)
    spec = GridSpec(models=["baseline"], attacks=[AttackRequest("none"), AttackRequest("corner-patch", {"side": 0.5})],
                    dataset="synthetic-tiny", data_root=tiny_dataset.root.parent, checkpoints={"baseline": str(tiny_ckpt)},
                    samples=2)  # fmt: skip
    records = run_grid(spec, tmp_path / "run", progress=False)
    patch = next(r for r in records if r.config.attack == "corner-patch")
    assert patch.family == "patch" and patch.kind.occludes
    assert "a grey square over the top-left corner" in patch.threat and "L-inf" not in patch.threat
    assert patch.extra["linf_max"] > 0  # the images were really perturbed
    clean = next(r for r in records if r.config.attack == "none")
    assert patch.mAP <= clean.mAP + 1e-9


DEFENSE_MODULE = '''
    """Horizontal flip as an input defense."""
    import torch

    from reidbench.defenses.base import Defense, register_defense


    @register_defense("hflip", random=False, differentiable=True, description="mirror the image")
    class HFlip(Defense):
        def __init__(self, *, input_size=None) -> None:
            super().__init__(input_size=input_size)

        def transform(self, x: torch.Tensor) -> torch.Tensor:
            return x.flip(-1)
'''


def test_a_new_defense_is_one_module(plugin) -> None:  # type: ignore[no-untyped-def]
    from reidbench.defenses import create_defense

    plugin("my_flip_defense", DEFENSE_MODULE)
    x = torch.rand(2, 3, 8, 4)
    assert torch.equal(create_defense("hflip")(x), x.flip(-1))
    assert torch.equal(create_defense("hflip+hflip")(x), x)  # chains work with no extra code
    assert DEFENSES.get("hflip").adaptive.startswith("plain gradients")


LAYOUT_MODULE = '''
    """A flat layout: ROOT/FlatReID/{train,query,gallery}/<pid>_<cam>_<n>.png."""
    from pathlib import Path

    from reidbench.data.base import ReIDDataset, Sample
    from reidbench.data.registry import DatasetEntry, register_dataset


    def _read(folder: Path) -> list[Sample]:
        out = []
        for p in sorted(folder.glob("*.png")):
            pid, cam, _ = p.stem.split("_")
            out.append(Sample(path=str(p), pid=int(pid), camid=int(cam)))
        return out


    def load_flat(root: Path) -> ReIDDataset:
        base = Path(root) / "FlatReID"
        return ReIDDataset(name="flat", root=base, train=_read(base / "train"), query=_read(base / "query"),
                           gallery=_read(base / "gallery"))


    register_dataset(DatasetEntry(name="flat", description="a flat test layout", folder="FlatReID", load=load_flat))
'''


def test_a_new_dataset_layout_is_one_module(plugin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from reidbench.data import load_dataset

    plugin("my_flat_layout", LAYOUT_MODULE)
    for split, names in {"train": ["1_0_0", "1_1_1"], "query": ["2_0_0"], "gallery": ["2_1_0", "3_0_0"]}.items():
        (tmp_path / "data" / "FlatReID" / split).mkdir(parents=True)
        for n in names:
            Image.new("RGB", (8, 16), (10, 20, 30)).save(tmp_path / "data" / "FlatReID" / split / f"{n}.png")
    ds = load_dataset("flat", tmp_path / "data")
    assert [s.pid for s in ds.gallery] == [2, 3] and [s.camid for s in ds.query] == [0]
    assert len(ds.fingerprint) >= 8


MODEL_MODULE = '''
    """A two-layer convolutional network with the BNNeck head, trained with the baseline recipe."""
    from torch import nn

    from reidbench.models.backbones import register_backbone
    from reidbench.models.card import ModelCard
    from reidbench.models.registry import ModelEntry, register_model


    @register_backbone("twoconv")
    def twoconv(imagenet_weights=None):
        net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(8, 24, 3, padding=1))
        return net, 24


    register_model(ModelEntry(card=ModelCard(
        name="twoconv-bnneck", method="two-layer CNN", paper="none (an extension example)", backbone="twoconv",
        input_size=(64, 32), feat_dim=24, num_classes=24, train_dataset="synthetic-tiny", recipe="baseline",
    )))
'''


def test_a_new_model_is_one_module(plugin, tiny_split) -> None:  # type: ignore[no-untyped-def]
    from reidbench.train import create_recipe
    from reidbench.train.trainer import TrainConfig, train
    from reidbench.zoo import create_model

    plugin("my_model", MODEL_MODULE)
    model = create_model("twoconv-bnneck", checkpoint=None)
    emb = model(tiny_split.query[:4])
    assert emb.shape == (4, 24) and not model.training
    images = (tiny_split.gallery[:32] * 255).to(torch.uint8)
    labels = torch.arange(32) % 8
    before = [p.detach().clone() for p in model.parameters()]
    train(model, create_recipe("twoconv-bnneck"), images, labels, torch.zeros(32, dtype=torch.long),
          TrainConfig(p=4, k=2).scaled(1), progress=False)  # the baseline recipe, named on the card
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_the_extension_recipes_are_the_documented_ones() -> None:
    """The steps tested here are the ones docs/architecture.md gives (the doc names each test)."""
    doc = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    for test in ("test_a_new_attack_family_is_one_module", "test_a_new_defense_is_one_module",
                 "test_a_new_dataset_layout_is_one_module", "test_a_new_model_is_one_module"):  # fmt: skip
        assert test in doc, f"docs/architecture.md does not point at {test}"
    assert json.loads(json.dumps(sorted(FAMILIES)))  # families stay JSON-safe names
