"""FNA, the furthest-negative attack (Bouniot et al.).

Paper: Quentin Bouniot, Romaric Audigier, Angélique Loesch, "Vulnerability of Person
Re-Identification Models to Metric Adversarial Attacks", CVPR Workshops 2020.
http://openaccess.thecvf.com/content_CVPRW_2020/papers/w47/Bouniot_Vulnerability_of_Person_Re-Identification_Models_to_Metric_Adversarial_Attacks_CVPRW_2020_paper.pdf
Code: CEA-LIST/adv-reid (``max_min_mse``,
``perturb_queries_hardest_multi`` in ``utils/adv_evaluation.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from reidbench.attack_types import Access, Budget, Family, Threat
from reidbench.attacks.base import MetricAttack, register_attack
from reidbench.params import check_range


@register_attack(
    "fna",
    family=Family.METRIC,
    threat=Threat(
        Access.WHITE_BOX, "on the embedding",
        knows="knows the attacked images' identities, the clean embeddings of their same-identity images in the "
        "other set, and every gallery identity's mean embedding",
        budget=Budget.LINF,
    ),
    description="Bouniot et al.'s furthest-negative attack: push from own identity, pull to the furthest other identity",
)
class FNA(MetricAttack):
    r"""FNA, the furthest-negative attack of Bouniot et al. ("Vulnerability of Person
    Re-Identification Models to Metric Adversarial Attacks", CVPR-W 2020).

    Distance measure: L-inf.

    Loss (maximised), with f the L2-normalised embedding, G(x) the clean embeddings of x's
    same-identity images in the other set, and p_far the prototype (mean gallery embedding,
    normalised) of another identity that is furthest from the clean f(x):

    .. math:: L(x') = \sum_{g \in G(x)} \|f(x') - g\|_2^2 - \|f(x') - p_{far}\|_2^2

    PGD without random start: ``x' <- clip_{x, eps}(x' + step * sign(grad))``, then [0,1].

    Threat model: white-box, gallery-aware; the attacker knows the attacked images' identities,
    the clean embeddings of their same-identity images in the other set, and the mean embedding
    of every gallery identity. Budget: eps, step, steps.

    Arguments:
        model (nn.Module): maps images in [0,1] to embeddings; in eval mode.
        eps (float): L-inf budget. (Default: 5/255)
        step (float): step size. (Default: 1/255)
        steps (int): iterations. (Default: 15)
        eot (int): gradient passes averaged per step. (Default: 1)
        same_camera_guides (bool): keep push guides from the image's own camera. (Default: True)

    Shape:
        images (B, 3, H, W) in [0,1]; labels (B,) pids; index (B,) global indices; output as images.

    Deviations from the paper/code:
        * Push guides come from the other set and prototypes from the gallery. The original
          builds both from the attacked set itself, includes the attacked image among its own
          guides, and pads every guide list with the image's own feature (an SMA term whose weight
          depends on how many images the identity has); none of that is kept.
        * The furthest prototype is chosen once, from the clean embedding (as in the code).
        * The clamp is to [0,1], not to the batch's min/max.

    Examples::
        >>> attack = create_attack("fna", model)
        >>> attack.set_context(AttackContext(guide_feats=gf, guide_pids=gp, proto_feats=pf, proto_pids=pp))
        >>> adv = attack(images, pids, index)
    """

    uses_labels = True
    uses_guides = True
    uses_prototypes = True

    def __init__(self, model: nn.Module, eps: float = 5 / 255, step: float = 1 / 255, steps: int = 15,
                 eot: int = 1, same_camera_guides: bool = True) -> None:
        super().__init__(model, eps=eps, eot=eot, step=step, steps=steps, same_camera_guides=same_camera_guides)
        check_range(self.name, "step", step, 1e-6 / 255, 64 / 255, scale=255, unit="/255")
        check_range(self.name, "steps", steps, 1, 10000, integer=True)
        self.step, self.steps = step, steps
        self.same_camera_guides = bool(same_camera_guides)

    def furthest_prototype(self, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The normalised prototype of another identity with the lowest cosine to the clean feature."""
        protos = self.context_tensor("proto_feats", clean, normalize=True)
        ppids = self.context_tensor("proto_pids", labels)
        sim = clean @ protos.T
        sim = sim.masked_fill(labels.unsqueeze(1) == ppids.unsqueeze(0), float("inf"))
        return protos[sim.argmin(dim=1)]

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                index: torch.Tensor | None = None) -> torch.Tensor:
        assert index is not None
        labels = self.check_labels(labels, images.shape[0]).to(images.device)
        s, n = self.guide_sums(labels, index, images, self.same_camera_guides)
        with torch.no_grad():
            far = self.furthest_prototype(self.features(images), labels)

        def loss(f: torch.Tensor) -> torch.Tensor:
            push = n * (f * f).sum(dim=1) - 2 * (f * s).sum(dim=1)
            return push - ((f - far) ** 2).sum(dim=1)

        return self.iterate(images, lambda t: loss, steps=self.steps, step=self.step)
