"""A user's own model for `--model tests.external_model:make` (images -> embeddings)."""

import torch
from torch import nn


class Tiny(nn.Module):
    input_size = (64, 32)

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 5, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


def make() -> nn.Module:
    torch.manual_seed(0)
    return Tiny()
