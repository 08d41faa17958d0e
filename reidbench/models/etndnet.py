"""ETNDNet: Erasing, Transforming, and Noising Defense Network for occluded person re-ID.

Paper: Neng Dong, Liyan Zhang, Shuanglin Yan, Hao Tang and Jinhui Tang, "Erasing, Transforming,
and Noising Defense Network for Occluded Person Re-Identification", IEEE Transactions on Circuits
and Systems for Video Technology (TCSVT), 2023, https://doi.org/10.1109/TCSVT.2023.3339167.
Code: https://github.com/nengdong96/ETNDNet.

The network is the BNNeck baseline with GeM pooling (p=3, as the code). What makes it ETNDNet is
its training: a min-max game over erased, transformed and noised feature maps, used only during
training (the ``etndnet`` recipe, ``reidbench.train.recipes.etndnet``; the paper's ablations are
its ``branches`` option). At test time only the clean branch is used, so the inference path is
the baseline's.
"""

from __future__ import annotations

from reidbench.models.baseline import COMMON_DEVIATIONS, EMBEDDED
from reidbench.models.card import ModelCard, PaperResult
from reidbench.models.registry import ModelEntry, register_model

register_model(
    ModelEntry(
        card=ModelCard(
            name="etndnet",
            method="ETNDNet",
            paper="Dong et al., Erasing, Transforming, and Noising Defense Network for Occluded Person Re-ID, IEEE TCSVT 2023",
            code="nengdong96/ETNDNet",
            num_classes=96,
            recipe="etndnet",
            pooling="gem",
            paper_results=(
                PaperResult("Occluded-Duke", "none", 63.6, 54.7, "ETNDNet", "ETNDNet paper, Table I"),
                PaperResult("Occluded-Duke", "none", 52.5, 44.6, "baseline", "ETNDNet paper, ablation"),
            ),
            deviations=COMMON_DEVIATIONS + (
                "Noising replaces the region with U(0,1) values as the paper's Eq. 4 says; the code multiplies the "
                "region by a U(0,1) map (option noise_mode='multiply').",
                "The clean branch also carries the baseline's triplet loss so that ETNDNet and the baseline differ "
                "only in the defense; the paper and code use label-smoothed CE alone.",
                "In the classifier step the backbone runs without gradients (the code computes and then discards "
                "them): same update, less work.",
                "Backbone: resnet_tiny with GeM pooling (p=3, as the code) instead of ResNet-50(-IBN).",
            ),
            **EMBEDDED,  # type: ignore[arg-type]
        ),
    )
)
