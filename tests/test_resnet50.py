"""The real-scale path on CPU: a ResNet-50 BNNeck baseline at 256x128 through each attack family,
one training iteration, local ImageNet weights; and ``benchmarks/gpu_check.py --cpu-tiny``.

The ResNet-50 tests are slow (about a minute together on 2 CPU cores): random weights, four
images, a few steps: they check the plumbing at full size, not the numbers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reidbench.attacks import AttackContext, FeatureMapAttack, create_attack
from reidbench.data import ReIDDataset, relabel
from reidbench.data.images import load_images, to_float
from reidbench.eval.features import extract_features
from reidbench.models import ReIDModel
from reidbench.zoo import create_model

ROOT = Path(__file__).resolve().parent.parent
SIZE = (256, 128)


@pytest.fixture(scope="module")
def resnet50() -> ReIDModel:
    torch.manual_seed(0)
    return create_model("baseline", checkpoint=None, backbone="resnet50", input_size=SIZE, num_classes=751,
                        feat_dim=2048)  # fmt: skip


@pytest.mark.slow
def test_resnet50_through_every_attack_family(resnet50: ReIDModel, tiny_dataset: ReIDDataset) -> None:
    model = resnet50
    assert model.card.backbone == "resnet50" and model.input_size == SIZE
    q = tiny_dataset.query[:4]
    # gallery images of the queries' identities (what M-IFGSM pushes away from), and a few others
    mates = [s for s in tiny_dataset.gallery if s.pid in {t.pid for t in q}][:6]
    g = mates + [s for s in tiny_dataset.gallery if s not in mates][: 8 - len(mates)]
    x = to_float(load_images(q, SIZE))
    gx = load_images(g, SIZE)
    q_pids = torch.tensor([s.pid for s in q])
    g_pids = torch.tensor([s.pid for s in g])
    gf = extract_features(model, gx, batch_size=8)
    assert gf.shape == (8, 2048)
    protos_pids = g_pids.unique()
    protos = torch.stack([gf[g_pids == p].mean(0) for p in protos_pids])
    ctx = AttackContext(guide_feats=gf, guide_pids=g_pids, guide_camids=torch.tensor([s.camid for s in g]),
                        proto_feats=protos, proto_pids=protos_pids, camids=torch.tensor([s.camid for s in q]),
                        occluder_bank=to_float(gx[:4]), seed=0)  # fmt: skip
    index = torch.arange(4)
    cells = [("mifgsm", {"eps": 8, "steps": 2}), ("pgd", {"eps": 8, "steps": 2, "batch_invariant": False}),
             ("noise", {"eps": 8}), ("erasing", {"area": 0.2}), ("fmap-erase", {})]  # fmt: skip
    for name, params in cells:
        attack = create_attack(name, model, **params)
        attack.set_context(ctx)
        if isinstance(attack, FeatureMapAttack):
            feats = attack.embed(x, index)
        else:
            adv = attack(x, q_pids, index=index)
            assert adv.shape == x.shape and adv.min() >= 0 and adv.max() <= 1
            assert not torch.equal(adv, x), name
            if "eps" in params:
                assert float((adv - x).abs().max()) <= params["eps"] / 255 + 1e-6, name
            feats = extract_features(model, adv, batch_size=4)
        assert feats.shape == (4, 2048) and torch.isfinite(feats).all(), name


@pytest.mark.slow
def test_resnet50_imagenet_weights_and_one_training_iteration(tiny_dataset: ReIDDataset, tmp_path: Path) -> None:
    import torchvision

    from reidbench.models.registry import MODELS, build_model
    from reidbench.train.trainer import TrainConfig
    from reidbench.train.training import train_registered

    torch.manual_seed(1)
    tv_state = torchvision.models.resnet50(weights=None).state_dict()  # random: nothing is downloaded
    weights = tmp_path / "resnet50-random.pth"
    torch.save(tv_state, weights)
    card = MODELS.get("baseline").card.replace(backbone="resnet50", input_size=SIZE, feat_dim=2048, num_classes=24)
    model = build_model(card, imagenet_weights=weights)
    ours = model.backbone.state_dict()
    names = {"stem.0.": "conv1.", "stem.1.": "bn1."}
    compared = 0
    for k, v in ours.items():
        tv_key = next((tv + k[len(o):] for o, tv in names.items() if k.startswith(o)), k)
        assert torch.equal(v, tv_state[tv_key]), k
        compared += 1
    assert compared == len([k for k in tv_state if not k.startswith("fc.")])
    # one training iteration of the baseline recipe at full size, with those weights
    cfg = TrainConfig(epochs=1, p=2, k=2, iters_per_epoch=1, triplet_weight=1.0, warmup_epochs=0, milestones=())
    out = tmp_path / "baseline-r50.safetensors"
    trained_card, path = train_registered("baseline", dataset="synthetic-tiny", data_root=tiny_dataset.root.parent,
                                          out=out, backbone="resnet50", input_size=SIZE, config=cfg,
                                          imagenet_weights=weights, progress=False)  # fmt: skip
    assert path == out and out.is_file() and out.with_suffix(".json").is_file()
    assert trained_card.backbone == "resnet50" and trained_card.input_size == SIZE
    assert trained_card.hyperparams["imagenet_init"] is True
    assert trained_card.num_classes == len({s.pid for s in relabel(tiny_dataset.train)[0]})
    again = create_model("baseline", checkpoint=out)
    assert again.card.backbone == "resnet50"
    conv1 = again.backbone.stem[0].weight
    assert conv1.shape == tv_state["conv1.weight"].shape and not torch.equal(conv1, tv_state["conv1.weight"])  # trained
    with torch.no_grad():
        f = again(torch.rand(2, 3, *SIZE))
    assert f.shape == (2, 2048) and torch.isfinite(f).all()


def test_gpu_check_cpu_tiny_runs(tmp_path: Path) -> None:
    """``benchmarks/gpu_check.py --cpu-tiny`` keeps working (CI has no GPU)."""
    env = {"PATH": "/usr/bin:/bin", "REIDBENCH_CACHE": str(tmp_path / "cache"), "REIDBENCH_DATA": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}  # fmt: skip
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--cpu-tiny"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert "| check | value | note |" in lines
    for check in ("M-IFGSM", "feature extraction", "evaluate_rank", "peak GPU memory", "AMP vs fp32"):
        assert any(line.startswith(f"| {check}") for line in lines), check
    assert "Traceback" not in res.stderr
