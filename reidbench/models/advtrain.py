"""Online adversarial training with a metric attack: the standard defense to compare against.

The network is the BNNeck baseline. Each training iteration crafts adversarial versions of the
batch against the current network and trains on 0.5 * L(clean) + 0.5 * L(adversarial), as used
for re-ID by Bouniot et al. ("Vulnerability of person re-identification models to metric
adversarial attacks", CVPR-W 2020); that is the ``advtrain`` recipe,
``reidbench.train.recipes.advtrain`` (default adversary: SMA, eps 5/255, 3 steps of 2/255).
"""

from __future__ import annotations

from reidbench.models.baseline import COMMON_DEVIATIONS, EMBEDDED
from reidbench.models.card import ModelCard
from reidbench.models.registry import ModelEntry, register_model

register_model(
    ModelEntry(
        card=ModelCard(
            name="advtrain",
            method="Adversarial training",
            paper="Bouniot et al., Vulnerability of Person Re-Identification Models to Metric Adversarial Attacks, CVPR-W 2020",
            code="CEA-LIST/adv-reid",
            num_classes=96,
            recipe="advtrain",
            deviations=COMMON_DEVIATIONS + (
                "The adversary during training is SMA with eps 5/255, 3 steps of 2/255 (random start), "
                "re-crafted every iteration against the current network in eval mode; the evaluation attacks use "
                "15 steps of 1/255, so the test-time attacker is stronger than the one trained against.",
                "Loss 0.5*L(clean) + 0.5*L(adversarial), each the baseline's CE + triplet.",
            ),
            **EMBEDDED,  # type: ignore[arg-type]
        ),
    )
)
