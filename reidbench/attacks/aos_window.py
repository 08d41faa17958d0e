"""The AOS worst-case sliding-window occlusion, used as a test-time attack.

Paper: Houjing Huang, Dangwei Li, Zhang Zhang, Xiaotang Chen, Kaiqi Huang, "Adversarially
Occluded Samples for Person Re-identification", CVPR 2018 (Sec. 3.2-3.4, Fig. 4).
Code: huanghoujing/AOS4ReID (``script/experiment/sw_occlude.py``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import AttackContext, InputAttack, mean_colour, register_attack
from reidbench.params import check_area, check_range


def window_grid(h: int, w: int, area: float, stride: int) -> tuple[int, int, list[int], list[int]]:
    """(window height, width, top positions, left positions) for an h x w image.

    A square of side sqrt(area * h * w), or a full-width band of the same area when the square no
    longer fits (area > w / h); stride ``stride`` px at 256 px height, scaled to ``h``. Positions
    follow the paper's count, floor((h - d) / s) + 1 per axis.
    """
    side = max(1, round(math.sqrt(area * h * w)))
    dh, dw = (side, side) if side <= w else (max(1, round(area * h)), w)
    s = max(1, round(stride * h / 256))
    return dh, dw, list(range(0, h - dh + 1, s)), list(range(0, w - dw + 1, s))


@register_attack(
    "aos-window",
    family=Family.OCCLUSION,
    threat=Threat(
        Access.SCORES,
        "queries of the embedding (no gradients, no labels, no other images): tries every position of a "
        "mean-colour square and keeps the one that moves the embedding most",
        budget=Budget.AREA, scope="occluded fraction set by area",
    ),
    description="AOS worst-case sliding window: the square occlusion that most lowers the cosine to the clean embedding",
)
class AOSWindow(InputAttack):
    r"""The worst-case sliding-window occlusion of AOS ("Adversarially Occluded Samples for Person
    Re-identification", CVPR 2018), as a test-time attack.

    A square of side ``sqrt(area * H * W)`` filled with the model's normalisation mean (zero after
    normalisation) slides over the image with stride 10 px at 256 px height (scaled to the input
    height). Every position is scored by the drop of the cosine similarity between the occluded
    image's embedding and the clean one,

    .. math:: s(p) = 1 - \cos(f(x \odot m_p + c (1 - m_p)), f(x)),

    and the image is returned occluded at the position with the largest drop. No labels are
    needed. All positions of a batch are evaluated in chunks of ``chunk`` occluded images.

    ``last_heatmaps`` (N, n_top, n_left) holds the score maps, blurred 3x3 as in AOS, of every
    image attacked since the last ``set_context``, in the order of their global indices (so
    after the harness has attacked the whole query set batch by batch, row i is query i), for the
    report's sensitivity heatmaps; ``last_positions`` (N, 2) the chosen windows' (top, left) in
    pixels, in the same order.

    Threat model: the attacker queries the model's embedding (black-box, score-based; no
    gradients), knows no labels and no other images. Not eps-bounded. Budget: ``area``.

    Arguments:
        model (nn.Module): maps images in [0,1] to embeddings; in eval mode.
        area (float): occluded fraction, 0.01-0.9. Above W/H a square no longer fits and the
            window becomes a full-width band of the same area. (Default: 0.1, as in AOS)
        stride (int): stride in px at 256 px height. (Default: 10)

    Deviations from the paper/code:
        * The score is the drop of the cosine to the query's own clean embedding, not the drop of
          the true-class probability: at test time there is no classifier over the test
          identities, and no label is needed this way.
        * The chosen position is the argmax of the raw scores; the 3x3 blur (AOS uses it to
          sample training positions) is applied only to the stored heatmaps.
        * Positions follow the paper's count; the code's ``range(0, H - d, stride)`` drops the
          last row and column of positions when (H - d) is a multiple of the stride. The side is
          rounded, not floored (57 at 256x128, as in the code).
        * The code shortcut ``ori_prob = 1`` does not apply (the clean embedding is computed).
    """

    queries_model = True  # score-based: a defense in front of the model changes its choice
    chunk: int = 256  # occluded images per forward pass; raise it on a large GPU

    def __init__(self, model: nn.Module, area: float = 0.1, stride: int = 10) -> None:
        super().__init__(model, area=area, stride=stride)
        check_area(self.name, area)
        check_range(self.name, "stride", stride, 1, 256, integer=True)
        self.area, self.stride = area, stride

    def set_context(self, context: AttackContext) -> None:
        super().set_context(context)
        self._maps: dict[int, torch.Tensor] = {}
        self._positions: dict[int, tuple[int, int]] = {}

    @property
    def last_heatmaps(self) -> torch.Tensor | None:
        """(N, n_top, n_left) blurred score maps of the images attacked since ``set_context``."""
        return torch.stack([self._maps[i] for i in sorted(self._maps)]) if self._maps else None

    @property
    def last_positions(self) -> torch.Tensor | None:
        """(N, 2) chosen (top, left) of the images attacked since ``set_context``, by index."""
        return torch.tensor([self._positions[i] for i in sorted(self._positions)]) if self._positions else None

    def masks(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, int, int]:
        """(P, 1, h, w) bool masks of every window position, and the grid's (rows, cols)."""
        dh, dw, tops, lefts = window_grid(h, w, self.area, self.stride)
        m = torch.zeros(len(tops), len(lefts), h, w, dtype=torch.bool, device=device)
        for i, t in enumerate(tops):
            for j, left in enumerate(lefts):
                m[i, j, t : t + dh, left : left + dw] = True
        return m.view(-1, 1, h, w), len(tops), len(lefts)

    def scores(self, images: torch.Tensor, masks: torch.Tensor, fill: torch.Tensor) -> torch.Tensor:
        """(B, P) drop of the cosine to the clean embedding for every image and position."""
        b, p = images.shape[0], masks.shape[0]
        clean = F.normalize(self.model(images), dim=1)
        out = images.new_empty(b * p)
        for start in range(0, b * p, self.chunk):
            pairs = torch.arange(start, min(start + self.chunk, b * p), device=images.device)
            bi, pi = pairs // p, pairs % p
            occluded = torch.where(masks[pi], fill, images[bi])
            f = F.normalize(self.model(occluded), dim=1)
            out[start : start + len(pairs)] = 1 - (f * clean[bi]).sum(dim=1)
        return out.view(b, p)

    def perturb(self, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2:]
        masks, rows, cols = self.masks(h, w, images.device)
        fill = mean_colour(self.model, images).view(1, 3, 1, 1)
        s = self.scores(images, masks, fill)
        best = s.argmax(dim=1)
        maps = s.view(-1, 1, rows, cols)
        blurred = F.avg_pool2d(F.pad(maps, (1, 1, 1, 1), mode="replicate"), 3, stride=1).squeeze(1).cpu()
        _, _, tops, lefts = window_grid(h, w, self.area, self.stride)
        for i, k, m in zip(index.tolist(), best.tolist(), blurred, strict=True):
            self._maps[i] = m
            self._positions[i] = (tops[k // cols], lefts[k % cols])
        return torch.where(masks[best], fill, images)
