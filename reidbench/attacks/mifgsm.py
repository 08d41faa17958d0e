"""M-IFGSM, I-FGSM and FGSM metric attacks (Bai et al.).

Paper: Song Bai, Yingwei Li, Yuyin Zhou, Qizhu Li, Philip H.S. Torr, "Adversarial Metric Attack
and Defense for Person Re-identification", IEEE TPAMI (doi:10.1109/TPAMI.2020.3031625). https://arxiv.org/abs/1901.10650
Code: SongBaiHust/Adversarial_Metric_Attack (``Gen_Adv.py``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import MetricAttack, register_attack
from reidbench.params import check_range

THREAT = Threat(
    Access.WHITE_BOX, "on the embedding",
    knows="knows the attacked images' identities and the clean embeddings of their same-identity images in the "
    "other set (the guides)",
    budget=Budget.LINF,
)


@register_attack(
    "mifgsm",
    family=Family.METRIC,
    threat=THREAT,
    description="Bai et al.'s M-IFGSM: push the embedding away from its same-identity guides, with momentum",
)
class MIFGSM(MetricAttack):
    r"""M-IFGSM, the momentum metric attack of Bai et al. ("Adversarial Metric Attack and Defense
    for Person Re-identification", IEEE TPAMI, https://arxiv.org/abs/1901.10650).

    Distance measure: L-inf.

    Loss (maximised), with f the L2-normalised embedding and G(x) the clean embeddings of x's
    same-identity images in the other set:

    .. math:: L(x') = \sum_{g \in G(x)} \|f(x') - g\|_2^2

    Update: ``grad <- grad / mean|grad|`` per image, ``g <- momentum * g + grad``,
    ``x' <- clip_{x, eps}(x' + step * sign(g))``, then clamp to [0,1].

    Threat model: white-box; the attacker knows the identities of the images it attacks and the
    clean embeddings of the other set's same-identity images. Who is attacked is the harness's
    choice (Bai et al. attack the gallery with the queries as guides; the JAD tables attack the
    query). Budget: eps, step, steps.

    Arguments:
        model (nn.Module): maps images in [0,1] to embeddings; in eval mode.
        eps (float): L-inf budget. (Default: 5/255)
        step (float): step size. (Default: 1/255)
        steps (int): iterations. (Default: 15, as in the LTA/SMA comparisons; Bai et al. use
            min(eps + 4, 1.25 * eps) in /255 units, which is 6 for eps 5)
        momentum (float): decay mu of the accumulated gradient. (Default: 1.0)
        eot (int): gradient passes averaged per step. (Default: 1)
        same_camera_guides (bool): keep guides from the attacked image's own camera. (Default:
            True, as in the original code; False needs ``context.camids``)

    Shape:
        images (B, 3, H, W) in [0,1]; labels (B,) pids; index (B,) global indices; output as images.

    Deviations from the paper/code:
        * One momentum run over all guides jointly. The LTA authors' copy of this attack restarts
          MI-FGSM for every guide and keeps the last run; that is not the paper's loss.
        * The guides come only from the other set, so the attacked image is never its own guide
          (CEA-LIST's multi-guide code pads each guide list with the image's own feature, which
          silently adds an SMA term whose weight depends on the identity's image count).
        * Images without any guide (a distractor, an identity absent from the other set) are left
          unchanged; their all-zero gradient is counted in ``grad_stats``.
        * Horizontal-flip feature averaging (an option in the original code) is not used.
        * Steps default to 15 (the value all later re-ID attack papers compare at).

    Examples::
        >>> attack = create_attack("mifgsm", model, eps=5, step=1, steps=15)
        >>> attack.set_context(AttackContext(guide_feats=gf, guide_pids=gp, seed=0))
        >>> adv = attack(images, pids, index)
    """

    uses_labels = True
    uses_guides = True

    def __init__(self, model: nn.Module, eps: float = 5 / 255, step: float = 1 / 255, steps: int = 15,
                 momentum: float = 1.0, eot: int = 1, same_camera_guides: bool = True) -> None:
        super().__init__(model, eps=eps, eot=eot, step=step, steps=steps, momentum=momentum,
                         same_camera_guides=same_camera_guides)
        check_range(self.name, "step", step, 1e-6 / 255, 64 / 255, scale=255, unit="/255")
        check_range(self.name, "steps", steps, 1, 10000, integer=True)
        check_range(self.name, "momentum", momentum, 0.0, 10.0)
        self.step, self.steps, self.momentum = step, steps, momentum
        self.same_camera_guides = bool(same_camera_guides)

    def guide_loss(self, images: torch.Tensor, labels: torch.Tensor | None, index: torch.Tensor) -> Any:
        labels = self.check_labels(labels, images.shape[0])
        s, n = self.guide_sums(labels, index, images, self.same_camera_guides)

        def loss(f: torch.Tensor) -> torch.Tensor:
            return n * (f * f).sum(dim=1) - 2 * (f * s).sum(dim=1)

        return loss

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                index: torch.Tensor | None = None) -> torch.Tensor:
        assert index is not None
        loss = self.guide_loss(images, labels, index)
        return self.iterate(images, lambda t: loss, steps=self.steps, step=self.step, momentum=self.momentum)


@register_attack(
    "ifgsm",
    family=Family.METRIC,
    threat=THREAT,
    description="I-FGSM on Bai et al.'s metric loss (no momentum)",
)
class IFGSM(MIFGSM):
    r"""I-FGSM on Bai et al.'s metric loss: :class:`MIFGSM` without momentum.

    ``x' <- clip_{x, eps}(x' + step * sign(grad L(x')))`` with the loss of :class:`MIFGSM`
    (Bai et al.'s I-FGSM is their MI-FGSM code with momentum 0). Arguments: eps (5/255),
    step (1/255), steps (15), eot (1), same_camera_guides (True).

    Threat model: as :class:`MIFGSM` (white-box; labels and same-identity guides; eps).

    Deviations from the paper/code: as :class:`MIFGSM` (guides from the other set only; no
    flip averaging; 15 steps).
    """

    def __init__(self, model: nn.Module, eps: float = 5 / 255, step: float = 1 / 255, steps: int = 15,
                 eot: int = 1, same_camera_guides: bool = True) -> None:
        super().__init__(model, eps=eps, step=step, steps=steps, momentum=0.0, eot=eot,
                         same_camera_guides=same_camera_guides)


@register_attack(
    "fgsm",
    family=Family.METRIC,
    threat=THREAT,
    description="FGSM on Bai et al.'s metric loss: one signed step of size eps",
)
class FGSM(MIFGSM):
    r"""FGSM on Bai et al.'s metric loss: one step ``x' = clamp(x + eps * sign(grad L(x)))``.

    The loss is that of :class:`MIFGSM`. Arguments: eps (5/255), eot (1), same_camera_guides
    (True).

    Threat model: as :class:`MIFGSM` (white-box; labels and same-identity guides; eps).

    Deviations from the paper/code: as :class:`MIFGSM`. Bai et al.'s FGSM does not clip to an
    eps ball (one step of size eps cannot leave it) and neither does this one.
    """

    def __init__(self, model: nn.Module, eps: float = 5 / 255, eot: int = 1, same_camera_guides: bool = True) -> None:
        super().__init__(model, eps=eps, step=max(eps, 1e-6 / 255), steps=1, momentum=0.0, eot=eot,
                         same_camera_guides=same_camera_guides)
