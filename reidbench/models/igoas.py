"""IGOAS-like: incremental generative occlusion with adversarial suppression.

Paper: Zhao et al., "Incremental Generative Occlusion Adversarial Suppression Network for Person
ReID", IEEE TIP 2021. Code: Vill-Lab/2021-TIP-IGOAS.

The network is the BNNeck baseline; the method is its training, the ``igoas`` recipe
(``reidbench.train.recipes.igoas``). What is kept from the original:

* incremental generative occlusion on a copy of the batch: one rectangle per batch, area
  fraction 0.1 + 0.4 * e / 90 (e = the epoch on the paper's 90-epoch scale), capped at 1/3 from
  epoch 55, aspect ratio U(0.5, 1), filled with a random constant per channel;
* adversarial suppression: with a = the channel mean of the occluded copy's feature map and m the
  visibility mask (1 where the image is not occluded) resized to the map, the loss MSE(a, a*m),
  weight 1, which drives the activation inside the occluded area to zero.

What is not: the original's second branch (an occluded branch with CBAM attention) and its
softmax-weighted CE losses. Here the clean and the occluded copy go through the one shared
backbone and head, each with the baseline's loss, which is what "IGOAS-like" means.
"""

from __future__ import annotations

from reidbench.models.baseline import COMMON_DEVIATIONS, EMBEDDED
from reidbench.models.card import ModelCard, PaperResult
from reidbench.models.registry import ModelEntry, register_model

register_model(
    ModelEntry(
        card=ModelCard(
            name="igoas",
            method="IGOAS-like",
            paper="Zhao et al., Incremental Generative Occlusion Adversarial Suppression Network for Person ReID, IEEE TIP 2021",
            code="Vill-Lab/2021-TIP-IGOAS",
            num_classes=96,
            recipe="igoas",
            paper_results=(
                PaperResult("Occluded-Duke", "none", 60.1, 49.4, "IGOAS", "IGOAS paper (repo log: mAP 48.6)"),
            ),
            deviations=COMMON_DEVIATIONS + (
                "IGOAS-like: one shared backbone and head for the clean and the occluded copy; the original's "
                "second (occluded, CBAM) branch and its softmax-weighted CE losses are not built.",
                "Kept: the incremental occlusion schedule (0.1 + 0.4*e/90, capped at 1/3 from epoch 55, "
                "mapped onto the embedded default's epochs) and the suppression loss MSE(a, a*m), weight 1.",
                "m is the visibility mask (1 outside the occluder) bilinearly resized to the map, so the loss "
                "suppresses activation inside the occluded area.",
            ),
            **EMBEDDED,  # type: ignore[arg-type]
        ),
    )
)
