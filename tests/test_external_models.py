"""Other tools' models and checkpoints: torchreid, fast-reid and BoT, loaded through reidbench.

Each peer's real architecture is built from its pip package (random weights), saved the way that
tool saves, loaded through ``reidbench.zoo.create_model`` (and the CLI), and its embeddings are
compared with the peer's own forward pass on the same normalised input. The torchreid and
fast-reid tests are skipped where the tool is not installed (``pip install 'reidbench[torchreid]'``,
``'reidbench[fastreid]'``); the BoT tests need no tool.
"""

from __future__ import annotations

import csv
import importlib
import os
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from torch import nn

from reidbench.errors import CheckpointError, ParameterError, ReidbenchError
from reidbench.models.checkpoints import (
    ForeignCheckpointError,
    checkpoint_origin,
    guess_torchreid_arch,
)
from reidbench.models.external import (
    FastReIDMapModel,
    ToolMissingError,
    TorchreidMapModel,
    TorchreidModel,
)
from reidbench.zoo import create_model

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
TOL = 1e-5

# fast-reid's configs/Base-bagtricks.yml (JDAI-CV/fast-reid), model and input sections.
BAGTRICKS = """\
MODEL:
  META_ARCHITECTURE: Baseline
  BACKBONE:
    NAME: build_resnet_backbone
    NORM: BN
    DEPTH: 50x
    LAST_STRIDE: 1
    FEAT_DIM: 2048
    WITH_IBN: False
    PRETRAIN: True
  HEADS:
    NAME: EmbeddingHead
    NORM: BN
    WITH_BNNECK: True
    POOL_LAYER: GlobalAvgPool
    NECK_FEAT: before
    CLS_LAYER: Linear
  LOSSES:
    NAME: ("CrossEntropyLoss", "TripletLoss",)
INPUT:
  SIZE_TRAIN: [ 256, 128 ]
  SIZE_TEST: [ 256, 128 ]
DATASETS:
  NAMES: ("Market1501",)
  TESTS: ("Market1501",)
"""


def _tool(name: str) -> ModuleType:
    """Import a peer tool or skip; its import-time notices (torchreid's Cython warning) are not ours.

    Under CI (``CI`` set, as `.ci/run` runs) a missing peer fails instead: `make test` installs
    both, so a skip there would hide a broken install.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if os.environ.get("CI"):
            return importlib.import_module(name)
        return pytest.importorskip(name, reason=f"{name} is not installed or does not import "
                                                f"(pip install 'reidbench[{name}]')")  # fmt: skip


def _randomise_bn(net: nn.Module, seed: int = 1) -> None:
    """Non-trivial BN statistics and affine terms, so a load that drops them would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _images(n: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(seed))


def _first_row(path: Path) -> dict[str, str]:
    with path.open(newline="") as f:
        return next(csv.DictReader(f))


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ---------------------------------------------------------------------------------------------
# torchreid
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torchreid() -> ModuleType:
    return _tool("torchreid")


def _torchreid_net(tr: ModuleType, arch: str, num_classes: int = 24) -> nn.Module:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = tr.models.build_model(arch, num_classes=num_classes, loss="softmax", pretrained=False, use_gpu=False)
    _randomise_bn(net)
    return net.eval()


def _save_torchreid(tr: ModuleType, net: nn.Module, folder: Path, epoch: int = 3, data_parallel: bool = False) -> Path:
    """As torchreid's engine saves: save_checkpoint({state_dict, epoch, rank1, optimizer, scheduler})."""
    opt = torch.optim.Adam(net.parameters(), lr=3e-4)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[20, 40])
    state = net.state_dict()
    if data_parallel:
        state = {f"module.{k}": v for k, v in state.items()}
    record = {"state_dict": state, "epoch": epoch, "rank1": np.float32(0.5), "optimizer": opt.state_dict(),
              "scheduler": sched.state_dict()}  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr.utils.save_checkpoint(record, str(folder))
    path = folder / f"model.pth.tar-{epoch}"
    assert path.is_file()
    return path


@pytest.mark.parametrize(("arch", "data_parallel"), [("osnet_x1_0", True), ("resnet50", False)])
def test_torchreid_checkpoint_matches_torchreid_forward(torchreid: ModuleType, tmp_path: Path, arch: str,
                                                        data_parallel: bool) -> None:  # fmt: skip
    net = _torchreid_net(torchreid, arch)
    path = _save_torchreid(torchreid, net, tmp_path, data_parallel=data_parallel)
    model = create_model(f"torchreid:{arch}", checkpoint=path)
    x = _images(2, (256, 128))
    with torch.no_grad():
        ours = model(x)
        theirs = net((x - MEAN) / STD)  # torchreid's test transform: ToTensor, Normalize(ImageNet)
    assert ours.shape == theirs.shape
    assert _max_diff(ours, theirs) <= TOL
    card = model.card
    assert card.method == f"torchreid {arch}" and card.input_size == (256, 128) and card.num_classes == 24
    assert card.mean == (0.485, 0.456, 0.406) and card.std == (0.229, 0.224, 0.225)
    assert card.checkpoint == str(path) and card.sha256 and len(card.sha256) == 64
    assert "imported" in card.notes and card.deviations[0].startswith("imported")
    assert card.distance == "euclidean"  # torchreid's engine ranks with euclidean distances
    # the map and head the feature-map attacks use give the same embedding
    assert isinstance(model, TorchreidMapModel)
    with torch.no_grad():
        assert _max_diff(model.head(model.feature_map(x)), ours) <= TOL


def test_torchreid_feature_map_attack_and_black_box(torchreid: ModuleType) -> None:
    from reidbench.attacks import create_attack

    osnet = create_model("torchreid:osnet_x0_25", checkpoint=None)
    x = _images(2, (256, 128))
    attack = create_attack("fmap-erase", osnet)
    with torch.no_grad():
        clean = osnet(x)
    perturbed = attack.embed(x, torch.arange(2))
    assert perturbed.shape == clean.shape and torch.isfinite(perturbed).all()
    assert _max_diff(perturbed, clean) > 0
    # an architecture whose forward is not featuremaps -> pool -> fc is a black box
    black = create_model("torchreid:mobilenetv2_x1_0", checkpoint=None)
    assert isinstance(black, TorchreidModel) and not hasattr(black, "feature_map")
    with pytest.raises(ParameterError, match="feature-map attacks need a model exposing feature_map") as exc:
        create_attack("fmap-erase", black).embed(x, torch.arange(2))
    assert "\n" not in str(exc.value)


def test_torchreid_unknown_architecture_or_another_ones_checkpoint(torchreid: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ReidbenchError, match="torchreid has no model 'osnet_x9'"):
        create_model("torchreid:osnet_x9", checkpoint=None)
    path = _save_torchreid(torchreid, _torchreid_net(torchreid, "osnet_x0_25"), tmp_path)
    with pytest.raises(CheckpointError, match="its layers look like osnet_x0_25; use --model torchreid:osnet_x0_25"):
        create_model("torchreid:osnet_x0_5", checkpoint=path)


@pytest.mark.slow
def test_cli_runs_a_torchreid_checkpoint_with_torchreids_numbers(torchreid: ModuleType, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """``reidbench run --model torchreid:osnet_x1_0 --checkpoint model.pth.tar-3`` on synthetic-tiny
    gives the rank-1 and mAP of torchreid's own embeddings of the same images."""
    from reidbench.cli import main
    from reidbench.data import load_dataset
    from reidbench.data.images import load_images, to_float
    from reidbench.eval.distance import compute_distance
    from reidbench.eval.metrics import evaluate_rank

    monkeypatch.setenv("REIDBENCH_DATA", str(tmp_path / "data"))
    net = _torchreid_net(torchreid, "osnet_x1_0")
    path = _save_torchreid(torchreid, net, tmp_path / "log")
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["run", "--model", "torchreid:osnet_x1_0", "--checkpoint", str(path), "--attack", "none",
                                    "--dataset", "synthetic-tiny", "--out", str(out), "--no-report", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    row = _first_row(out / "results.csv")
    assert row["model"] == "torchreid:osnet_x1_0" and row["distance"] == "euclidean"
    ds = load_dataset("synthetic-tiny", tmp_path / "data")
    q = to_float(load_images(ds.query, (256, 128)))
    g = to_float(load_images(ds.gallery, (256, 128)))
    with torch.no_grad():
        qf, gf = net((q - MEAN) / STD), net((g - MEAN) / STD)
    # the run's cached clean gallery features are torchreid's own embeddings
    (cached,) = (out / "cache").glob("gallery-*.safetensors")
    assert _max_diff(load_file(str(cached))["features"], gf) <= TOL
    # torchreid's protocol: squared euclidean distances (compute_distance_matrix), Market-style AP
    ref = evaluate_rank(compute_distance(qf, gf, "euclidean"), torch.tensor([s.pid for s in ds.query]),
                        torch.tensor([s.pid for s in ds.gallery]), torch.tensor([s.camid for s in ds.query]),
                        torch.tensor([s.camid for s in ds.gallery]))  # fmt: skip
    assert float(row["mAP"]) == pytest.approx(100 * ref.mAP, abs=1e-3)
    assert float(row["rank1"]) == pytest.approx(100 * ref.rank(1), abs=1e-3)


# ---------------------------------------------------------------------------------------------
# fast-reid
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastreid() -> ModuleType:
    return _tool("fastreid")


def _fastreid_net(config: Path, num_classes: int = 24) -> nn.Module:
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(str(config))
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = build_model(cfg)
    _randomise_bn(net)
    return net.eval()


def _save_fastreid(net: nn.Module, folder: Path) -> Path:
    """As fast-reid's Checkpointer saves: ``{"model": state_dict, <checkpointables>, iteration}``."""
    from fastreid.utils.checkpoint import Checkpointer

    opt = torch.optim.Adam(net.parameters(), lr=3.5e-4)
    folder.mkdir(parents=True, exist_ok=True)
    Checkpointer(net, str(folder), optimizer=opt).save("model_final", iteration=9)
    return folder / "model_final.pth"


def _configs(tmp_path: Path) -> Path:
    """Base-bagtricks.yml and a child config overriding the test size, as fast-reid lays them out."""
    (tmp_path / "Base-bagtricks.yml").write_text(BAGTRICKS)
    child = tmp_path / "Market1501" / "bagtricks_R50.yml"
    child.parent.mkdir()
    child.write_text('_BASE_: "../Base-bagtricks.yml"\nINPUT:\n  SIZE_TEST: [ 128, 64 ]\n')
    return child


def test_fastreid_checkpoint_matches_fastreid_forward(fastreid: ModuleType, tmp_path: Path) -> None:
    config = _configs(tmp_path)
    net = _fastreid_net(config)
    path = _save_fastreid(net, tmp_path / "logs")
    model = create_model(f"fastreid:{config}", checkpoint=path)
    assert isinstance(model, FastReIDMapModel)
    assert model.card.input_size == (128, 64)  # INPUT.SIZE_TEST of the config
    x = _images(2, (128, 64))
    with torch.no_grad():
        ours = model(x)
        theirs = net(x * 255.0)  # fast-reid's ToTensor gives 0-255 pixels; the model normalises
    assert ours.shape == theirs.shape == (2, 2048)
    assert _max_diff(ours, theirs) <= TOL
    with torch.no_grad():  # the neck feature: pool -> BN neck, what fast-reid's test uses
        neck = net.heads.bottleneck(net.heads.pool_layer(net.backbone(net.preprocess_image(x * 255.0))))[..., 0, 0]
        assert _max_diff(ours, neck) <= TOL
        assert _max_diff(model.head(model.feature_map(x)), ours) <= TOL
    card = model.card
    assert card.method == "fast-reid Baseline resnet 50x" and card.num_classes == 24 and card.distance == "cosine"
    assert card.mean == pytest.approx((0.485, 0.456, 0.406)) and card.std == pytest.approx((0.229, 0.224, 0.225))
    assert card.checkpoint == str(path) and "imported" in card.notes
    # gradients reach the input (attacks), and the caller's images are left as they were
    xg = x.clone().requires_grad_(True)
    model(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all() and torch.equal(xg.detach(), x)


def test_fastreid_bad_config(fastreid: ModuleType, tmp_path: Path) -> None:
    with pytest.raises(ReidbenchError, match="fast-reid config .* not found"):
        create_model(f"fastreid:{tmp_path / 'nope.yml'}", checkpoint=None)
    bad = tmp_path / "bad.yml"
    bad.write_text("MODEL:\n  NO_SUCH_KEY: 1\n")
    with pytest.raises(ReidbenchError, match="cannot read fast-reid config"):
        create_model(f"fastreid:{bad}", checkpoint=None)


def test_checkpoint_of_one_tool_into_another_is_refused_naming_both(torchreid: ModuleType, fastreid: ModuleType,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    tr_path = _save_torchreid(torchreid, _torchreid_net(torchreid, "osnet_x0_25"), tmp_path / "tr")
    config = _configs(tmp_path)
    fr_path = _save_fastreid(_fastreid_net(config), tmp_path / "fr")
    cases = [
        ("baseline", tr_path, "torchreid", "--model torchreid:osnet_x0_25"),
        ("torchreid:osnet_x0_25", fr_path, "fast-reid", "--model fastreid:CONFIG.yml"),
        (f"fastreid:{config}", tr_path, "torchreid", "--model torchreid:osnet_x0_25"),
        ("etndnet", fr_path, "fast-reid", "--model fastreid:CONFIG.yml"),
    ]
    for model, path, tool, fix in cases:
        with pytest.raises(ForeignCheckpointError) as exc:
            create_model(model, checkpoint=path)
        msg = str(exc.value)
        assert f"came from {tool}" in msg and fix in msg and "\n" not in msg, msg
    res = CliRunner().invoke(_cli(), ["run", "--model", "baseline", "--checkpoint", str(tr_path), "--attack", "none",
                                      "--dataset", "synthetic-tiny", "--out", str(tmp_path / "run"), "--no-report"])  # fmt: skip
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "torchreid" in lines[0] and "--model torchreid:osnet_x0_25" in lines[0]


def _cli() -> Any:
    from reidbench.cli import main

    return main


# ---------------------------------------------------------------------------------------------
# Tool-independent: missing tools, origins, unsafe files, BoT
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["torchreid", "fastreid"])
def test_missing_tool_is_one_line_with_the_pip_command(tool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == tool or m.startswith(tool + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, tool, None)  # `import tool` now fails as if it were not installed
    cfg = tmp_path / "c.yml"
    cfg.write_text(BAGTRICKS)
    spec = "torchreid:osnet_x1_0" if tool == "torchreid" else f"fastreid:{cfg}"
    with pytest.raises(ToolMissingError) as exc:
        create_model(spec, checkpoint=None)
    assert f"pip install 'reidbench[{tool}]'" in str(exc.value) and "\n" not in str(exc.value)
    res = CliRunner().invoke(_cli(), ["run", "--model", spec, "--attack", "none", "--dataset", "synthetic-tiny",
                                      "--out", str(tmp_path / "run"), "--no-report"])  # fmt: skip
    assert res.exit_code == 2 and "not installed" in res.output and "Traceback" not in res.output


def test_tool_missing_a_dependency_names_it(torchreid: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "torchreid" or m.startswith("torchreid.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cv2", None)  # torchreid imports OpenCV
    with pytest.raises(ToolMissingError, match=r"torchreid is installed but does not import \(missing module 'cv2'\); "
                                               r"pip install 'reidbench\[torchreid\]'"):  # fmt: skip
        create_model("torchreid:osnet_x1_0", checkpoint=None)


def test_tool_model_without_checkpoint_and_with_options(torchreid: ModuleType) -> None:
    with pytest.raises(CheckpointError, match="pass the torchreid checkpoint with --checkpoint"):
        create_model("torchreid:osnet_x1_0")
    with pytest.raises(ParameterError, match="has no options"):
        create_model("torchreid:osnet_x1_0", checkpoint=None, options={"cs": False})
    with pytest.raises(ParameterError, match="name the torchreid model after the colon"):
        create_model("torchreid:", checkpoint=None)


def test_origins_are_told_apart_from_key_names() -> None:
    t = torch.zeros(1)
    osnet = {"conv1.conv.weight": torch.zeros(64, 3, 7, 7), "conv2.0.conv1.conv.weight": t, "classifier.weight": t}
    assert checkpoint_origin({"state_dict": osnet, "epoch": 1}, osnet) == "torchreid"
    assert guess_torchreid_arch(osnet) == "osnet_x1_0"
    assert guess_torchreid_arch({"conv1.conv.weight": torch.zeros(32, 3, 7, 7)}) == "osnet_x0_5"
    r50 = {"conv1.weight": t, "classifier.weight": t, **{f"layer{i}.{j}.conv3.weight": t for i in (1, 2, 3, 4) for j in range(6 if i == 3 else 3)},
           "layer1.0.conv1.weight": t}  # fmt: skip
    assert checkpoint_origin(r50, r50) == "torchreid" and guess_torchreid_arch(r50) == "resnet50"
    fast = {"backbone.conv1.weight": t, "heads.bottleneck.0.weight": t, "heads.weight": t}
    assert checkpoint_origin({"model": fast, "iteration": 3}, fast) == "fastreid"
    bot = {"base.conv1.weight": t, "base.layer1.0.conv1.weight": t, "bottleneck.weight": t, "classifier.weight": t}
    assert checkpoint_origin(bot, bot) == "bot"
    ours = {"backbone.stem.0.weight": t, "head.bnneck.weight": t, "classifier.weight": t}
    assert checkpoint_origin(ours, ours) == "reidbench"
    assert checkpoint_origin({"w": t}, {"w": t}) is None


def test_a_tool_checkpoint_that_needs_code_is_refused(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (Path.touch, (tmp_path / "pwned",))

    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "epoch": 1, "extra": Evil()}, tmp_path / "model.pth.tar-1")
    with pytest.raises(CheckpointError) as exc:
        create_model("torchreid:osnet_x1_0", checkpoint=tmp_path / "model.pth.tar-1")
    assert "need code to unpickle" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "pwned").exists()


# BoT (michuanhaohao/reid-strong-baseline): Baseline.base is its ResNet (conv1, bn1, layer1-4),
# Baseline.bottleneck the BN neck, Baseline.classifier the bias-free classifier.
def _to_bot_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        if k in ("mean", "std"):
            continue  # BoT normalises in its transforms, not in the model
        k = k.replace("backbone.stem.0.", "base.conv1.").replace("backbone.stem.1.", "base.bn1.")
        k = k.replace("backbone.layer", "base.layer").replace("head.bnneck.", "bottleneck.")
        out[k] = v.clone()
    return out


@pytest.fixture(scope="module")
def bot_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    torch.manual_seed(0)
    original = create_model("baseline", checkpoint=None, backbone="resnet50", input_size=(256, 128), num_classes=751,
                            feat_dim=2048)  # fmt: skip
    _randomise_bn(original)
    state = _to_bot_names(original.state_dict())
    assert "base.layer1.0.conv1.weight" in state and "bottleneck.running_var" in state and "classifier.weight" in state
    assert not any(k.startswith(("backbone.", "head.")) for k in state)
    path = tmp_path_factory.mktemp("bot") / "resnet50_model_120.pth"
    torch.save(state, path)
    return original.eval(), path


def test_bot_checkpoint_loads_into_the_baseline(bot_checkpoint: tuple[nn.Module, Path]) -> None:
    original, path = bot_checkpoint
    model = create_model("baseline", checkpoint=path)
    card = model.card
    assert card.backbone == "resnet50" and card.input_size == (256, 128) and card.num_classes == 751 and card.feat_dim == 2048
    assert card.checkpoint == str(path) and card.sha256 and "imported" in card.notes and "BoT" in card.notes
    assert all(d.startswith(("imported", "Assumes BoT")) for d in card.deviations)
    x = _images(2, (256, 128))
    with torch.no_grad():
        assert _max_diff(model(x), original(x)) <= TOL
    # BoT's test feature (TEST.NECK_FEAT after): global average pool, then the BN neck
    with torch.no_grad():
        fmap = original.backbone((x - MEAN) / STD)
        after = nn.functional.batch_norm(fmap.mean(dim=(2, 3)), original.head.bnneck.running_mean,
                                         original.head.bnneck.running_var, original.head.bnneck.weight,
                                         original.head.bnneck.bias, eps=original.head.bnneck.eps)  # fmt: skip
        assert _max_diff(model(x), after) <= TOL


def test_bot_checkpoint_elsewhere_is_refused(bot_checkpoint: tuple[nn.Module, Path], tmp_path: Path) -> None:
    _, path = bot_checkpoint
    for model in ("etndnet", "torchreid:osnet_x1_0", f"fastreid:{tmp_path / 'any.yml'}"):
        with pytest.raises(ForeignCheckpointError, match=r"came from BoT .* --model baseline"):
            create_model(model, checkpoint=path)
    # BoT without the BN neck (MODEL.NECK no) has no bottleneck: refused with the reason
    state = {k: v for k, v in torch.load(path, weights_only=True).items() if not k.startswith("bottleneck.")}
    torch.save(state, tmp_path / "noneck.pth")
    with pytest.raises(CheckpointError, match="without the BN neck"):
        create_model("baseline", checkpoint=tmp_path / "noneck.pth")


@pytest.mark.slow
def test_cli_runs_a_bot_checkpoint(bot_checkpoint: tuple[nn.Module, Path], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    _, path = bot_checkpoint
    monkeypatch.setenv("REIDBENCH_DATA", str(tmp_path / "data"))
    out = tmp_path / "run"
    res = CliRunner().invoke(_cli(), ["run", "--model", "baseline", "--checkpoint", str(path), "--attack", "none",
                                      "--dataset", "synthetic-tiny", "--out", str(out), "--no-report", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    row = _first_row(out / "results.csv")
    assert row["model"] == "baseline" and 0 <= float(row["mAP"]) <= 100
