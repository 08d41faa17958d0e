"""BNNeck baseline ("Bag of Tricks", Luo et al., CVPR-W 2019; ETNDNet's baseline).

A ResNet with last stride 1, global pooling, a BatchNorm neck with frozen bias, and a bias-free
classifier. Retrieval uses the post-BN feature with cosine distance. Training (cross-entropy with
label smoothing 0.1, plus the batch-hard triplet loss, margin 0.3, on the pre-BN feature) is the
``baseline`` recipe, ``reidbench.train.recipes.baseline``.

Paper: Luo et al., "Bag of Tricks and A Strong Baseline for Deep Person Re-identification",
CVPR Workshops 2019. https://arxiv.org/abs/1903.07071
"""

from __future__ import annotations

from reidbench.models.card import ModelCard, PaperResult
from reidbench.models.registry import ModelEntry, register_model

# The embedded default: a width-reduced ResNet at Market-1501's native 128x64 on synthetic-mini.
EMBEDDED = dict(backbone="resnet_tiny", input_size=(128, 64), feat_dim=128, train_dataset="synthetic-mini")

COMMON_DEVIATIONS = (
    "Embedded default: resnet_tiny (BasicBlock widths 16-128, ~0.3M parameters) trained from scratch on "
    "synthetic-mini at 128x64, instead of ImageNet-initialised ResNet-50 at 256x128 on Market-1501.",
    "Schedule compressed to the embedded default's epochs (warm-up and lr steps in proportion); "
    "lr 3e-3 instead of 3.5e-4, because a from-scratch tiny network does not converge in the embedded default's 60 epochs at 3.5e-4.",
    "Batch 16 ids x 4 images (64) instead of 8 x 8: the synthetic-mini train ids have 4-24 images each.",
)


register_model(
    ModelEntry(
        card=ModelCard(
            name="baseline",
            method="BNNeck baseline",
            paper="Luo et al., Bag of Tricks and A Strong Baseline for Deep Person Re-ID, CVPR-W 2019",
            code="michuanhaohao/reid-strong-baseline",
            num_classes=96,
            recipe="baseline",
            paper_results=(
                PaperResult("Market-1501", "none", 88.4, 72.1, "baseline", "LTA paper, Table 1 (no re-ranking)"),
                PaperResult("Market-1501", "sma", 15.7, 11.1, "baseline", "LTA paper, Table 1"),
                PaperResult("Market-1501", "lta", 13.3, 9.6, "baseline", "LTA paper, Table 1"),
                PaperResult("Occluded-Duke", "none", 52.5, 44.6, "baseline", "ETNDNet paper, ablation"),
            ),
            deviations=COMMON_DEVIATIONS,
            **EMBEDDED,  # type: ignore[arg-type]
        ),
    )
)
