"""The re-ID model interface every part of reidbench leans on.

A :class:`ReIDModel` takes images in [0,1], shaped (B, 3, H, W), and normalises them itself, so
attacks work in pixel space. It exposes:

* ``feature_map(x)``: the backbone's map, (B, C, h, w), for feature-map attacks and AOS;
* ``head``: the module that turns a map into the retrieval embedding (pooling, BN neck);
* ``classifier``: the bias-free identity classifier used by training;
* ``forward(x)``: always the retrieval embedding (post-BN), in any mode;
* ``forward_train(x)``: a :class:`TrainOutput` with everything the recipes need.

``input_transform`` is an optional inference-time input transformation that is part of the
model's own inference path (JAD's circuitous scaling). It runs in ``forward`` before
normalisation; ``bare()`` returns the same network without it, which is what the harness attacks
when it evaluates a defense obliviously.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn
from torch.nn import functional as F


class GeneralizedMeanPooling(nn.Module):
    """GeM pooling (Radenovic et al.); p=3 as in the ETNDNet code, p=1 is average pooling."""

    def __init__(self, p: float = 3.0, eps: float = 1e-6) -> None:
        super().__init__()
        self.p = p
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 1.0:
            return x.mean(dim=(2, 3))
        return x.clamp(min=self.eps).pow(self.p).mean(dim=(2, 3)).pow(1.0 / self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class BNNeckHead(nn.Module):
    """Global pooling then BatchNorm1d with a frozen bias (the BNNeck of "Bag of Tricks")."""

    def __init__(self, in_channels: int, pooling: str = "avg") -> None:
        super().__init__()
        self.pool = GeneralizedMeanPooling(3.0 if pooling == "gem" else 1.0)
        self.bnneck = nn.BatchNorm1d(in_channels)
        self.bnneck.bias.requires_grad_(False)

    def pooled(self, fmap: torch.Tensor) -> torch.Tensor:
        """The pre-BN global feature (used by the triplet loss)."""
        return self.pool(fmap)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.bnneck(self.pooled(fmap))


@dataclass
class TrainOutput:
    """What a training forward returns: the map, both features and the logits."""

    fmap: torch.Tensor
    global_feat: torch.Tensor
    feat: torch.Tensor
    logits: torch.Tensor


_M = TypeVar("_M", bound="NormalisedInput")


class NormalisedInput(nn.Module):
    """What every model behind reidbench's interface shares: images enter in [0,1], are normalised
    inside with the ``mean``/``std`` buffers, pass the optional ``input_transform`` (an inference
    defense such as JAD's CS), and ``forward`` returns :meth:`embed` of them."""

    mean: torch.Tensor
    std: torch.Tensor
    input_transform: nn.Module | None

    def set_normalisation(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.input_transform = None

    @property
    def device(self) -> torch.device:
        return self.mean.device

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_transform is not None:
            x = self.input_transform(x)
        return self.embed(x)

    def bare(self: _M) -> _M:
        """A shallow copy sharing all weights, without the input transform (oblivious evaluation)."""
        if self.input_transform is None:
            return self
        twin = copy.copy(self)
        twin._modules = dict(self._modules)
        twin._modules.pop("input_transform", None)
        object.__setattr__(twin, "input_transform", None)
        return twin


class ReIDModel(NormalisedInput):
    """Backbone -> feature map -> BNNeck head -> embedding, plus a classifier for training."""

    def __init__(
        self,
        backbone: nn.Module,
        feat_dim: int,
        num_classes: int,
        *,
        mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
        std: tuple[float, float, float] = (0.229, 0.224, 0.225),
        pooling: str = "avg",
        input_size: tuple[int, int] = (256, 128),
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = BNNeckHead(feat_dim, pooling)
        self.classifier = nn.Linear(feat_dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.set_normalisation(mean, std)
        self.input_size = tuple(input_size)
        self.feat_dim = feat_dim

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's map for images in [0,1] (no input transform applied)."""
        return self.backbone(self.normalize(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.feature_map(x))

    def forward_train(self, x: torch.Tensor, fmap_hook: nn.Module | None = None) -> TrainOutput:
        """Training forward; ``fmap_hook`` may perturb the map (ETNDNet) before the head."""
        fmap = self.feature_map(x)
        if fmap_hook is not None:
            fmap = fmap_hook(fmap)
        return self.forward_from_map(fmap)

    def forward_from_map(self, fmap: torch.Tensor) -> TrainOutput:
        g = self.head.pooled(fmap)
        f = self.head.bnneck(g)
        return TrainOutput(fmap=fmap, global_feat=g, feat=f, logits=self.classifier(f))



def check_eval_mode(model: nn.Module, what: str = "evaluated") -> None:
    """Refuse a model in train mode: BN statistics and dropout would change the numbers."""
    from reidbench.errors import ModelModeError

    bad = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if bad:
        raise ModelModeError(
            f"the model must be in eval mode to be {what}, but {len(bad)} module(s) are in train mode "
            f"(first: {bad[0]}); call model.eval() first"
        )


def l2n(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x, dim=1)
