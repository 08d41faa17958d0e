"""FED-like: the network of the Feature Erasing and Diffusion Network, on reidbench's backbones.

Paper: Zhikang Wang, Feng Zhu, Shixiang Tang, Rui Zhao, Lihuo He and Jiangning Song, "Feature
Erasing and Diffusion Network for Occluded Person Re-Identification", CVPR 2022,
https://openaccess.thecvf.com/content/CVPR2022/html/Wang_Feature_Erasing_and_Diffusion_Network_for_Occluded_Person_Re-Identification_CVPR_2022_paper.html.
Code: https://github.com/ZacharyWang-007/FED-Occluded-ReID.

This module holds what FED keeps at inference: the backbone's map, part pooling into N = 4
horizontal stripes, the occlusion erasing module (OEM, Eq. 1) and the per-part neck. The NPO
augmentation with its occlusion masks, the feature diffusion module (FDM), the memory banks and
the losses are training only; they are the ``fed`` recipe (``reidbench.train.recipes.fed``), so
no FDM parameter is part of this network or of its checkpoint (the paper: "the FDM ... will
not be engaged in the inference phase").

The inference embedding (``forward``), for a map of C channels:

1. ``f_i``: the average of the map over horizontal stripe i (i = 1..4; a 16x8 map gives 4 rows
   per stripe, i.e. image rows [H*(i-1)/4, H*i/4)), as FED's part pooling of the ViT tokens;
2. ``s_i = sigmoid(W_rg LN(W_cp f_i))``: the OEM occlusion score of part i, one sub-module per
   part with ``W_cp``: C -> C/4 and ``W_rg``: C/4 -> 1 (Eq. 1);
3. ``r_i = W_i (s_i * f_i)``: the OEM-weighted part feature reduced to C/4 (a bias-free linear
   layer per part, FED's code's ResNet path ``reduction_list``);
4. the embedding is ``BN([r_1, r_2, r_3, r_4])``: the four reduced parts concatenated (C values)
   through a BatchNorm with frozen bias (FED's per-part ``bottleneck_local``; a BatchNorm1d over
   the concatenation is the four per-part BatchNorms side by side).

So ``feat_dim`` is C, the backbone's channels, as for every other model (128 for ``resnet_tiny``),
and the retrieval distance is cosine. FED's code evaluates exactly this kind of feature, the
concatenated OEM-weighted part features after their neck (its "global feature evaluation"
``x1_bn``); its class-token feature is trained with an ID loss but is not part of the embedding,
and the same holds here for the global average-pooled map (``FEDTrainOutput.pooled``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from reidbench.models.base import GeneralizedMeanPooling, ReIDModel, TrainOutput
from reidbench.models.baseline import EMBEDDED
from reidbench.models.card import ModelCard, PaperResult
from reidbench.models.registry import ModelEntry, register_model

#: FED's number of parts (horizontal stripes), N = 4, matching its NPO masks.
PARTS = 4


class OcclusionErasingModule(nn.Module):
    """OEM (FED Eq. 1): per part, FC C -> C/4, LayerNorm, FC C/4 -> 1, sigmoid; one sub-module
    per part. ``forward(parts)`` maps part features (B, N, C) to occlusion scores (B, N) in (0, 1):
    1 = visible body part, 0 = occluded (the NPO masks' convention)."""

    def __init__(self, channels: int, parts: int = PARTS) -> None:
        super().__init__()
        hidden = max(1, channels // 4)
        self.scorers = nn.ModuleList(
            nn.Sequential(nn.Linear(channels, hidden), nn.LayerNorm(hidden), nn.Linear(hidden, 1), nn.Sigmoid())
            for _ in range(parts)
        )

    def forward(self, parts: torch.Tensor) -> torch.Tensor:
        return torch.cat([score(parts[:, i]) for i, score in enumerate(self.scorers)], dim=1)


@dataclass
class FEDParts:
    """What the head computes on the way to the embedding."""

    parts: torch.Tensor  # (B, N, C) part-pooled features f_i
    scores: torch.Tensor  # (B, N) OEM occlusion scores s_i
    reduced: torch.Tensor  # (B, C) [r_1..r_N], before the neck's BatchNorm
    embedding: torch.Tensor  # (B, C) BN(reduced): the retrieval embedding


class FEDHead(nn.Module):
    """Map -> embedding: part pooling, OEM weighting, per-part reduction, BN neck (see the module
    docstring). ``pooled(fmap)`` is the global pooled map, a training-only branch (FED's class
    token); it is not part of the embedding."""

    def __init__(self, channels: int, parts: int = PARTS, pooling: str = "avg") -> None:
        super().__init__()
        if channels % parts:
            raise ValueError(f"FED needs a backbone whose channels ({channels}) divide into {parts} parts")
        self.num_parts = parts
        self.oem = OcclusionErasingModule(channels, parts)
        self.reduction = nn.ModuleList(nn.Linear(channels, channels // parts, bias=False) for _ in range(parts))
        self.bnneck = nn.BatchNorm1d(channels)
        self.bnneck.bias.requires_grad_(False)
        self.pool = GeneralizedMeanPooling(3.0 if pooling == "gem" else 1.0)

    def part_features(self, fmap: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, N, C): the mean of each of N horizontal stripes."""
        return F.adaptive_avg_pool2d(fmap, (self.num_parts, 1)).flatten(2).transpose(1, 2)

    def pooled(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.pool(fmap)

    def forward_parts(self, fmap: torch.Tensor) -> FEDParts:
        parts = self.part_features(fmap)
        scores = self.oem(parts)
        weighted = parts * scores.unsqueeze(-1)
        reduced = torch.cat([red(weighted[:, i]) for i, red in enumerate(self.reduction)], dim=1)
        return FEDParts(parts=parts, scores=scores, reduced=reduced, embedding=self.bnneck(reduced))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return self.forward_parts(fmap).embedding


@dataclass
class FEDTrainOutput(TrainOutput):
    """``TrainOutput`` plus what FED's recipe needs. ``global_feat`` is the pre-BN embedding
    (the reduced parts), ``feat`` the embedding, ``logits`` the classifier on it (FED's
    ``classifier1``); ``scores`` are the OEM scores (B, N) and ``pooled`` the global pooled map
    (B, C), the training-only global branch."""

    scores: torch.Tensor
    pooled: torch.Tensor


class FEDNetwork(ReIDModel):
    """The FED network: backbone map -> :class:`FEDHead` (parts, OEM, neck) -> embedding, plus the
    identity classifier on the embedding. Same constructor as :class:`ReIDModel`."""

    head: FEDHead  # type: ignore[assignment]  # the FED head replaces the BNNeck head

    def __init__(self, backbone: nn.Module, feat_dim: int, num_classes: int, *,
                 mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
                 std: tuple[float, float, float] = (0.229, 0.224, 0.225),
                 pooling: str = "avg", input_size: tuple[int, int] = (256, 128), parts: int = PARTS) -> None:
        super().__init__(backbone, feat_dim, num_classes, mean=mean, std=std, pooling=pooling, input_size=input_size)
        self.head = FEDHead(feat_dim, parts, pooling)

    def forward_from_map(self, fmap: torch.Tensor) -> FEDTrainOutput:
        out = self.head.forward_parts(fmap)
        return FEDTrainOutput(fmap=fmap, global_feat=out.reduced, feat=out.embedding,
                              logits=self.classifier(out.embedding), scores=out.scores,
                              pooled=self.head.pooled(fmap))  # fmt: skip

    def forward_train(self, x: torch.Tensor, fmap_hook: nn.Module | None = None) -> FEDTrainOutput:
        fmap = self.feature_map(x)
        return self.forward_from_map(fmap if fmap_hook is None else fmap_hook(fmap))


register_model(
    ModelEntry(
        network=FEDNetwork,  # build_model instantiates it instead of the plain ReIDModel
        card=ModelCard(
            name="fed",
            method="FED-like",
            paper="Wang et al., Feature Erasing and Diffusion Network for Occluded Person Re-Identification, CVPR 2022",
            code="ZacharyWang-007/FED-Occluded-ReID",
            num_classes=96,
            recipe="fed",
            paper_results=(
                PaperResult("Occluded-Duke", "none", 68.1, 56.4, "FED", "FED paper, Table 1"),
                PaperResult("Market-1501", "none", 95.0, 86.3, "FED", "FED paper, Table 2"),
                PaperResult("Occluded-Duke", "none", 59.1, 49.1, "baseline",
                            "FED paper, Table 3 (ViT baseline, ID + triplet, no random erasing)"),
            ),
            deviations=(
                "Embedded default: resnet_tiny (BasicBlock widths 16-128, ~0.3M parameters) trained from scratch on "
                "synthetic-mini at 128x64, instead of an ImageNet-initialised ViT-B/16 at 256x128 on Occluded-Duke or "
                "Market-1501; the parts are 4 horizontal stripes of the 16x8 map instead of groups of patch tokens, and "
                "the global branch is the average-pooled map instead of the class token.",
                "Embedding: BN([W_i (s_i * f_i)] for the 4 parts), the OEM-weighted part features reduced to C/4 each "
                "(FED's code's ResNet path) and concatenated (C values) through a BatchNorm with frozen bias; the "
                "ViT code keeps the 4 x 768 part features unreduced. The global branch is not in the embedding, as "
                "in FED's code.",
                "Schedule: the shared trainer's, the same as every model's (Adam, lr 3e-3, weight decay 5e-4, linear "
                "warm-up and steps compressed to the embedded default's epochs) instead of SGD (momentum 0.9, weight "
                "decay 1e-4), lr 0.008 with cosine decay, 120 epochs. Batch 16 ids x 4 images per branch, as the "
                "paper.",
                "Losses as the paper's Eq. 10 (1/2 of the sum of the 2 MSE, 6 ID and 4 contrastive losses); the ID "
                "losses are plain cross-entropy (paper and code: no label smoothing) and there is no triplet loss, so "
                "the shared config's label_smoothing and triplet_weight are not used by this recipe.",
                "NPO occluders are crops of training images (a seeded sample of 256, cut, jittered and pasted by the "
                "npo attack's code, which jitters every strip and calls a crop tall above height/width 2) instead of "
                "FED's 30 hand-cut background and object patches, so some occluders hold parts of people.",
                "NPO masks follow the paper's rule on the pixel differences |x - x'|: a stripe more than 3/4 changed "
                "is 0, else 1 (a vertical strip, at most W/2 wide, never reaches 3/4); FED's code uses a ratio "
                "heuristic instead.",
                "The shared augmentation's random erasing (p = 0.5) stays on for both branches; FED's code turns it "
                "off. The clean branch's OEM target is all ones, as in the code.",
                "Memory update: the mean of the batch's clean features of each identity with momentum 0.2 (Eq. 3); "
                "the code updates per sample. Both banks start from the identity centres of the embedding over the "
                "un-augmented training split (the code: the part features without OEM).",
                "FDM: K = 8 nearest centres of other identities (cosine; fewer when there are fewer identities), 8 "
                "heads when the embedding's width allows (else its largest divisor below 8), FFN1 and FFN2 with "
                "residual and post-LayerNorm (Linear d -> 4d, GELU, Linear 4d -> d, shared by the parts), then a "
                "BatchNorm with frozen bias and its own classifier. It lives in the recipe and is discarded after "
                "training, with the memory banks.",
            ),
            **EMBEDDED,  # type: ignore[arg-type]
        ),
    )
)
