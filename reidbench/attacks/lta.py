"""LTA, the local transformation attack (Gong et al., JAD paper).

Paper: Yunpeng Gong, Liqing Huang, Lifei Chen, "Person Re-identification Method Based on Color
Attack and Joint Defence", arXiv 2021 (CVPR 2022 per the authors' README). https://arxiv.org/abs/2111.09571
Code: finger-monkey/LTA_and_joint-defence (``torchattacks/attacks/LTA.py``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from reidbench import ops
from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import MetricAttack, register_attack
from reidbench.params import check_range


@register_attack(
    "lta",
    family=Family.METRIC,
    threat=Threat(Access.WHITE_BOX, "on the embedding",
                  knows="needs nothing but the attacked image (no labels, no other images)", budget=Budget.LINF),
    description="LTA: MI-FGSM away from a fresh local-grayscale version of the image at every step",
)
class LTA(MetricAttack):
    r"""LTA, the local transformation attack ("Person Re-identification Method Based on Color
    Attack and Joint Defence", https://arxiv.org/abs/2111.09571), Eq. 1-6.

    Distance measure: L-inf.

    At every iteration n a reference image ``x_ref(n) = LGT(x)`` is built: a fresh random
    rectangle (area U(0.02, 0.4), aspect U(0.3, 1/0.3)) of the clean image is replaced by its
    grayscale. Loss (maximised), f the L2-normalised embedding:

    .. math:: L(x') = \|f(x') - f(\mathrm{LGT}_n(x))\|_2^2

    MI-FGSM from x: ``grad <- grad / mean|grad|``, ``g <- momentum * g + grad``,
    ``x' <- clip_{x, eps}(x' + step * sign(g))``, then clamp to [0,1].

    Threat model: white-box; the attacker needs only the image it attacks. Budget: eps, step,
    steps, momentum.

    Arguments:
        model (nn.Module): maps images in [0,1] to embeddings; in eval mode.
        eps (float): L-inf budget. (Default: 5/255)
        step (float): step size. (Default: 1/255)
        steps (int): iterations. (Default: 15)
        momentum (float): decay of the accumulated gradient. (Default: 1.0)
        eot (int): gradient passes averaged per step. (Default: 1)

    Shape:
        images (B, 3, H, W) in [0,1]; index (B,) global indices; output as images.

    Deviations from the paper/code:
        * Every image of the batch gets its own fresh rectangle at every iteration, drawn from a
          generator seeded by (seed, image index). The authors' code converts only the first
          element of each batch (``img_gray[0] = transform(img_gray[0])``), so every other image
          is attacked against its own clean copy (an SMA without random start after step one).
        * The gradient is divided by its per-image mean |g| (Bai et al.'s code, also the LTA
          code) rather than the L1 norm of Eq. 4; the two differ by the constant number of
          pixels, which leaves sign(g) unchanged.
        * LGT uses torchvision's luminance weights (``reidbench.ops.local_grayscale``); the
          original goes through PIL and back.

    Examples::
        >>> adv = create_attack("lta", model)(images, index=index)
    """

    def __init__(self, model: nn.Module, eps: float = 5 / 255, step: float = 1 / 255, steps: int = 15,
                 momentum: float = 1.0, eot: int = 1) -> None:
        super().__init__(model, eps=eps, eot=eot, step=step, steps=steps, momentum=momentum)
        check_range(self.name, "step", step, 1e-6 / 255, 64 / 255, scale=255, unit="/255")
        check_range(self.name, "steps", steps, 1, 10000, integer=True)
        check_range(self.name, "momentum", momentum, 0.0, 10.0)
        self.step, self.steps, self.momentum = step, steps, momentum

    @staticmethod
    def draw_regions(gens: list[torch.Generator], h: int, w: int, steps: int) -> torch.Tensor:
        """The LGT rectangles of every step, (steps, B, 4) int64 rows (top, left, height, width).

        Image i's rectangle at step t is the t-th that ``ops.local_grayscale`` would draw from its
        generator: each generator serves one image, so drawing all of an image's steps before
        the attack starts gives the very same rectangles as drawing one per step, and the step
        loop has no per-image Python work (nor, on a GPU, a host copy per step).
        """
        return torch.tensor([[tuple(ops.sample_region(h, w, g)) for g in gens] for _ in range(steps)],
                            dtype=torch.int64).reshape(steps, len(gens), 4)

    @staticmethod
    def reference(images: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
        """LGT(x) for a batch: each image's rectangle (``regions``, (B, 4) on its device) replaced
        by its grayscale, in one masked select (equal, bit for bit, to ``ops.local_grayscale``)."""
        h, w = images.shape[-2:]
        top, left, height, width = (v.view(-1, 1, 1) for v in regions.unbind(1))
        ys = torch.arange(h, device=images.device).view(1, h, 1)
        xs = torch.arange(w, device=images.device).view(1, 1, w)
        inside = (ys >= top) & (ys < top + height) & (xs >= left) & (xs < left + width)
        return torch.where(inside.unsqueeze(1), ops.grayscale(images), images)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                index: torch.Tensor | None = None) -> torch.Tensor:
        assert index is not None
        h, w = images.shape[-2:]
        regions = self.draw_regions(self.generators(index), h, w, self.steps).to(images.device)

        def loss_at(t: int) -> Callable[[torch.Tensor], torch.Tensor]:
            with torch.no_grad():
                ref = self.features(self.reference(images, regions[t]))
            return lambda f: ((f - ref) ** 2).sum(dim=1)

        return self.iterate(images, loss_at, steps=self.steps, step=self.step, momentum=self.momentum)
