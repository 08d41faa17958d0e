"""Shared fixtures: a tiny synthetic dataset and a tiny trained model, made in seconds."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from reidbench.data import ReIDDataset, load_dataset, relabel
from reidbench.data.images import load_images, to_float
from reidbench.models import ReIDModel
from reidbench.train.recipes.baseline import BaselineRecipe
from reidbench.train.trainer import TrainConfig, train
from reidbench.zoo import create_model


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests never read or write the user's ~/.cache/reidbench."""
    os.environ["REIDBENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    os.environ["REIDBENCH_DATA"] = str(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> ReIDDataset:
    """The ``synthetic-tiny`` preset (64x32, 24 train ids, 16 test ids), generated once per session."""
    return load_dataset("synthetic-tiny", tmp_path_factory.mktemp("tinydata"))


@dataclass
class TinySplit:
    query: torch.Tensor  # float images in [0,1]
    gallery: torch.Tensor
    q_pids: torch.Tensor
    g_pids: torch.Tensor
    q_camids: torch.Tensor
    g_camids: torch.Tensor


@pytest.fixture(scope="session")
def tiny_split(tiny_dataset: ReIDDataset) -> TinySplit:
    size = (64, 32)
    q, g = tiny_dataset.query, tiny_dataset.gallery
    return TinySplit(
        query=to_float(load_images(q, size)),
        gallery=to_float(load_images(g, size)),
        q_pids=torch.tensor([s.pid for s in q]),
        g_pids=torch.tensor([s.pid for s in g]),
        q_camids=torch.tensor([s.camid for s in q]),
        g_camids=torch.tensor([s.camid for s in g]),
    )


def make_tiny_model(num_classes: int = 24, backbone: str = "resnet_test", name: str = "baseline") -> ReIDModel:
    """An untrained registered model with a minimal backbone at 64x32."""
    torch.manual_seed(0)
    return create_model(name, checkpoint=None, backbone=backbone, num_classes=num_classes,
                        input_size=(64, 32), feat_dim=16 if backbone == "resnet_test" else 128)


@pytest.fixture(scope="session")
def tiny_trained_model(tiny_dataset: ReIDDataset) -> ReIDModel:
    """A baseline with the ``resnet_tiny`` backbone trained for ~15 s on synthetic-tiny (clean mAP ~50%)."""
    train_samples, _ = relabel(tiny_dataset.train)
    images = load_images(train_samples, (64, 32))
    labels = torch.tensor([s.pid for s in train_samples])
    camids = torch.tensor([s.camid for s in train_samples])
    model = make_tiny_model(int(labels.max()) + 1, backbone="resnet_tiny")
    cfg = TrainConfig(lr=1e-2, triplet_weight=1.0, p=8, k=4).scaled(40)
    train(model, BaselineRecipe(), images, labels, camids, cfg, progress=False)
    return model.eval()


@pytest.fixture()
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REIDBENCH_DATA", str(tmp_path / "data"))
    return tmp_path


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_trained_model: ReIDModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny trained baseline saved as a checkpoint, for grids run through the harness."""
    from reidbench.models.checkpoints import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "baseline-tiny.safetensors"
    save_checkpoint(tiny_trained_model, tiny_trained_model.card.replace(train_dataset="synthetic-tiny"), path)
    return path
