"""LTA's step loop without per-image Python work: the rectangles are drawn up front and the
grayscale references built in one masked select, with the numbers of the per-image loop it
replaced (``ops.local_grayscale`` on each image, one draw per step)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from reidbench import ops
from reidbench.attacks import AttackContext, create_attack
from reidbench.attacks.lta import LTA

from .conftest import make_tiny_model


class PerImageLTA(LTA):
    """LTA as it was: one ``ops.local_grayscale`` per image, drawn at each step."""

    def forward(self, images: torch.Tensor, labels: Any = None, index: Any = None) -> torch.Tensor:
        gens = self.generators(index)

        def loss_at(t: int) -> Any:
            with torch.no_grad():
                ref = torch.cat([ops.local_grayscale(images[i : i + 1], g) for i, g in enumerate(gens)])
                ref = self.features(ref)
            return lambda f: ((f - ref) ** 2).sum(dim=1)

        return self.iterate(images, loss_at, steps=self.steps, step=self.step, momentum=self.momentum)


def test_references_equal_the_per_image_loop() -> None:
    h, w = 37, 23  # odd sizes: rectangles touch every border
    x = torch.rand(48, 3, h, w, generator=torch.Generator().manual_seed(1))
    gens = [torch.Generator().manual_seed(1000 + i) for i in range(48)]
    again = [torch.Generator().manual_seed(1000 + i) for i in range(48)]
    regions = LTA.draw_regions(gens, h, w, 12)
    assert regions.shape == (12, 48, 4) and regions.dtype == torch.int64
    for t in range(12):
        old = torch.cat([ops.local_grayscale(x[i : i + 1], g) for i, g in enumerate(again)])
        assert torch.equal(LTA.reference(x, regions[t]), old)
    # Each image's generator is left where the per-step draws would leave it.
    assert all(torch.equal(a.get_state(), b.get_state()) for a, b in zip(gens, again, strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_attack_is_bitwise_the_per_image_version(dtype: torch.dtype) -> None:
    model = make_tiny_model().to(dtype).eval()
    x = torch.rand(6, 3, 64, 32, generator=torch.Generator().manual_seed(2), dtype=dtype)
    index = torch.tensor([5, 0, 9, 3, 7, 1])
    new = create_attack("lta", model, steps=5)
    old = PerImageLTA(model, steps=5)
    for a in (new, old):
        a.set_context(AttackContext(seed=11))
    adv = new(x, index=index)
    assert torch.equal(adv, old(x, index=index))
    assert not torch.equal(adv, x)
