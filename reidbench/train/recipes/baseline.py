"""The BNNeck baseline's recipe ("Bag of Tricks", Luo et al., CVPR-W 2019; ETNDNet's baseline).

Cross-entropy with label smoothing 0.1 on the BN-neck logits, plus the batch-hard triplet loss
(margin 0.3) on the pre-BN feature, one Adam optimiser: exactly the shared trainer's default step.
The architecture and card are in ``reidbench.models.baseline``.
"""

from __future__ import annotations

from reidbench.train.registry import register_recipe
from reidbench.train.trainer import Recipe


@register_recipe
class BaselineRecipe(Recipe):
    """CE (label smoothing 0.1) + batch-hard triplet (margin 0.3), one Adam optimiser."""

    name = "baseline"
