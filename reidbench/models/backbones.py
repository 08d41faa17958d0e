"""Backbones built from torchvision's ResNet blocks.

* ``resnet50``/``resnet18``: torchvision's models with the last stride set to 1 (a 256x128 input
  gives a 16x8 map, as in BoT and ETNDNet). ImageNet weights are an option for users who have
  them: pass a local file with ``imagenet_weights=PATH`` (the torchvision state dict). Nothing is
  ever downloaded by a constructor.
* ``resnet_tiny``: a width-reduced ResNet from the same BasicBlock, for the CPU embedded default.
  Its stages have strides 1,2,1,1 after a stride-4 stem, so a 128x64 input (Market-1501's native
  box size) gives a 16x8 map: the feature-map perturbations see the same grid as in the ETNDNet
  paper. About 650 training images/s on 2 CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from reidbench.errors import CheckpointError, UnknownNameError


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` that pools in channels_last memory on CPU when no gradient is taken,
    with identical results.

    In a forward pass of the embedded default's network (batch 128, CPU) this gives 1.23x more
    images per second, with either thread count; when the input gradient is taken as well (an
    attack step) it gains nothing (0.97-1.00x), so those passes keep torch's kernel. A maximum
    involves no rounding and both kernels keep the first maximum of each window, so outputs
    (and the argmax a gradient would follow) are bit-identical (tested). Other devices are left
    as they are.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous() and not torch.is_grad_enabled():
            return super().forward(x.contiguous(memory_format=torch.channels_last)).contiguous()
        return super().forward(x)


def _stem_pool(pool: nn.MaxPool2d) -> MaxPool2d:
    return MaxPool2d(pool.kernel_size, stride=pool.stride, padding=pool.padding, dilation=pool.dilation,
                     ceil_mode=pool.ceil_mode)  # fmt: skip


class _ResNetTrunk(nn.Module):
    """A torchvision ResNet without its pooling and fc: image -> feature map."""

    def __init__(self, net: tv_resnet.ResNet) -> None:
        super().__init__()
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, _stem_pool(net.maxpool))
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def _last_stride_one(net: tv_resnet.ResNet) -> None:
    block = net.layer4[0]
    if isinstance(block, tv_resnet.Bottleneck):
        block.conv2.stride = (1, 1)
    else:
        block.conv1.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


def _load_imagenet(net: nn.Module, path: str | Path) -> None:
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(f"ImageNet weights not found at {p}; pass the path of a torchvision ResNet state dict")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or non-torch file
        raise CheckpointError(f"cannot read ImageNet weights {p}: {exc}") from None
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = net.state_dict()
    shapes = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
              if k in own and hasattr(v, "shape") and v.shape != own[k].shape]  # fmt: skip
    if shapes:
        raise CheckpointError(f"ImageNet weights {p} do not match the backbone: mis-shaped {shapes[:5]}")
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise CheckpointError(
            f"ImageNet weights {p} do not match the backbone: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )


def _torchvision_trunk(net: tv_resnet.ResNet, dim: int, imagenet_weights: str | Path | None) -> tuple[nn.Module, int]:
    """A torchvision ResNet as a re-ID trunk: optional local ImageNet weights, last stride 1."""
    if imagenet_weights:
        _load_imagenet(net, imagenet_weights)
    _last_stride_one(net)
    return _ResNetTrunk(net), dim


def resnet50(imagenet_weights: str | Path | None = None) -> tuple[nn.Module, int]:
    return _torchvision_trunk(tv_resnet.resnet50(weights=None), 2048, imagenet_weights)


def resnet18(imagenet_weights: str | Path | None = None) -> tuple[nn.Module, int]:
    return _torchvision_trunk(tv_resnet.resnet18(weights=None), 512, imagenet_weights)


class TinyResNet(nn.Module):
    """ResNet of BasicBlocks with widths ``widths``; stem stride 4 (conv + max-pool), strides 1,2,1,1."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), blocks: tuple[int, ...] = (1, 1, 1, 1)) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
            MaxPool2d(3, stride=2, padding=1),
        )
        layers = []
        inplanes = widths[0]
        for width, n, stride in zip(widths, blocks, (1, 2, 1, 1), strict=True):
            mods = []
            for i in range(n):
                s = stride if i == 0 else 1
                down = None
                if s != 1 or inplanes != width:
                    down = nn.Sequential(nn.Conv2d(inplanes, width, 1, stride=s, bias=False), nn.BatchNorm2d(width))
                mods.append(tv_resnet.BasicBlock(inplanes, width, stride=s, downsample=down))
                inplanes = width
            layers.append(nn.Sequential(*mods))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


def resnet_tiny(imagenet_weights: str | Path | None = None) -> tuple[nn.Module, int]:
    if imagenet_weights:
        raise CheckpointError("resnet_tiny has no ImageNet weights; use resnet18 or resnet50 for that")
    return TinyResNet(), 128


def resnet_tiny_wide(imagenet_weights: str | Path | None = None) -> tuple[nn.Module, int]:
    """resnet_tiny with twice the widths (32-256, about 1.2M parameters): the embedded default's
    capacity experiment (docs/embedded-default.md)."""
    if imagenet_weights:
        raise CheckpointError("resnet_tiny_wide has no ImageNet weights; use resnet18 or resnet50 for that")
    return TinyResNet(widths=(32, 64, 128, 256)), 256


def resnet_test(imagenet_weights: str | Path | None = None) -> tuple[nn.Module, int]:
    """A minimal backbone for unit tests."""
    del imagenet_weights
    return TinyResNet(widths=(4, 8, 8, 16)), 16


BACKBONES: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    "resnet50": resnet50,
    "resnet18": resnet18,
    "resnet_tiny": resnet_tiny,
    "resnet_tiny_wide": resnet_tiny_wide,
    "resnet_test": resnet_test,
}


def build_backbone(name: str, imagenet_weights: str | Path | None = None) -> tuple[nn.Module, int]:
    try:
        factory = BACKBONES[name]
    except KeyError:
        raise UnknownNameError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None
    return factory(imagenet_weights)


def register_backbone(name: str) -> Callable[[Callable[..., tuple[nn.Module, int]]], Callable[..., tuple[nn.Module, int]]]:
    """Decorator: register ``factory(imagenet_weights) -> (module mapping images to a map, channels)``."""

    def deco(factory: Callable[..., tuple[nn.Module, int]]) -> Callable[..., tuple[nn.Module, int]]:
        if name in BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        BACKBONES[name] = factory
        return factory

    return deco
