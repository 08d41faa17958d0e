"""SMA, the self metric attack (Bouniot et al.).

Paper: Quentin Bouniot, Romaric Audigier, Angélique Loesch, "Vulnerability of Person
Re-Identification Models to Metric Adversarial Attacks", CVPR Workshops 2020.
http://openaccess.thecvf.com/content_CVPRW_2020/papers/w47/Bouniot_Vulnerability_of_Person_Re-Identification_Models_to_Metric_Adversarial_Attacks_CVPRW_2020_paper.pdf
Code: CEA-LIST/adv-reid (``gen_adv.py``, ``utils/adv_evaluation.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import MetricAttack, register_attack
from reidbench.params import check_range


@register_attack(
    "sma",
    family=Family.METRIC,
    threat=Threat(Access.WHITE_BOX, "on the embedding",
                  knows="needs nothing but the attacked image (no labels, no other images)", budget=Budget.LINF),
    description="Bouniot et al.'s self metric attack: push the embedding away from its own clean embedding",
)
class SMA(MetricAttack):
    r"""SMA, the self metric attack of Bouniot et al. ("Vulnerability of Person Re-Identification
    Models to Metric Adversarial Attacks", CVPR-W 2020).

    Distance measure: L-inf.

    Loss (maximised), with f the L2-normalised embedding and f(x) the clean one, held fixed:

    .. math:: L(x + \delta) = \|f(x + \delta) - f(x)\|_2^2

    PGD: ``delta_0 ~ U(-eps, eps)``, then ``steps`` steps ``x' <- clip_{x, eps}(x' + step *
    sign(grad))`` and a clamp to [0,1].

    The random start is required: at delta = 0 the loss is at its minimum and its gradient is
    exactly zero, so an attack started at x never moves. ``random_start=False`` exists only to
    show that (``grad_stats`` then reports an all-zero gradient).

    Threat model: white-box; the attacker needs only the image it attacks (no labels, no other
    set). Budget: eps, step, steps.

    Arguments:
        model (nn.Module): maps images in [0,1] to embeddings; in eval mode.
        eps (float): L-inf budget. (Default: 5/255)
        step (float): step size. (Default: 1/255)
        steps (int): iterations. (Default: 15)
        random_start (bool): start at x + U(-eps, eps). (Default: True)
        eot (int): gradient passes averaged per step. (Default: 1)

    Shape:
        images (B, 3, H, W) in [0,1]; index (B,) global indices; output as images.

    Deviations from the paper/code:
        * The random start is drawn per image from a generator seeded by (seed, image index),
          not from the global RNG, so it does not depend on the batch.
        * The clean feature is the model's own output on x in eval mode (the original computes
          it once per batch the same way); features are L2-normalised as in the code's cosine mode.
        * The clamp is to [0,1] (the code clamps to the batch's own min/max, which changes the
          budget with the batch's content).

    Examples::
        >>> adv = create_attack("sma", model, eps=5)(images, index=index)
    """

    def __init__(self, model: nn.Module, eps: float = 5 / 255, step: float = 1 / 255, steps: int = 15,
                 random_start: bool = True, eot: int = 1) -> None:
        super().__init__(model, eps=eps, eot=eot, step=step, steps=steps, random_start=random_start)
        check_range(self.name, "step", step, 1e-6 / 255, 64 / 255, scale=255, unit="/255")
        check_range(self.name, "steps", steps, 1, 10000, integer=True)
        self.step, self.steps, self.random_start_ = step, steps, bool(random_start)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                index: torch.Tensor | None = None) -> torch.Tensor:
        assert index is not None
        with torch.no_grad():
            clean = self.features(images)

        def loss(f: torch.Tensor) -> torch.Tensor:
            return ((f - clean) ** 2).sum(dim=1)

        start = self.random_start(images, self.generators(index)) if self.random_start_ else None
        return self.iterate(images, lambda t: loss, steps=self.steps, step=self.step, start=start)
