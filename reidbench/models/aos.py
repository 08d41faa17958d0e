"""AOS: adversarially occluded samples.

Paper: Houjing Huang, Dangwei Li, Zhang Zhang, Xiaotang Chen and Kaiqi Huang, "Adversarially
Occluded Samples for Person Re-identification", CVPR 2018,
https://openaccess.thecvf.com/content_cvpr_2018/html/Huang_Adversarially_Occluded_Samples_CVPR_2018_paper.html.
Code: https://github.com/huanghoujing/AOS4ReID.

The network is the BNNeck baseline; the method is its three-stage training (train the baseline,
search each training image's most harmful occluding square, retrain with those occlusions), the
``aos`` recipe, ``reidbench.train.recipes.aos``. The same sliding-window search, scored by the
embedding's drop in similarity, is the test-time ``aos-window`` attack.
"""

from __future__ import annotations

from reidbench.models.baseline import COMMON_DEVIATIONS, EMBEDDED
from reidbench.models.card import ModelCard
from reidbench.models.registry import ModelEntry, register_model

register_model(
    ModelEntry(
        card=ModelCard(
            name="aos",
            method="AOS",
            paper="Huang et al., Adversarially Occluded Samples for Person Re-identification, CVPR 2018",
            code="huanghoujing/AOS4ReID",
            num_classes=96,
            recipe="aos",
            deviations=COMMON_DEVIATIONS + (
                "Built on the BNNeck baseline (CE + triplet) rather than the paper's ResNet-50 IDE baseline.",
                "The search stride is 10 px at 256x128 scaled to the input height (5 px at 128x64); the square's "
                "side is sqrt(0.1*H*W) and it is filled with the ImageNet mean colour (zero after normalisation).",
                "Stage 1 is trained with the same seed and schedule as stage 3; the search uses the stage-1 "
                "model's classifier probabilities on un-augmented training images.",
                "The occlusion is applied to the raw image before flip, pad-crop and random erasing.",
            ),
            **EMBEDDED,  # type: ignore[arg-type]
        ),
    )
)

# The paper's ablations (its Table 1): the same retraining with the hardest position only, or
# with a uniformly random one. The default benchmark measures their clean accuracy for the
# reproduction table.
for _variant, _what in (("hard1", "Hard-1: the argmax of each sensitivity map"),
                        ("random", "Random: a uniformly random position, no search")):
    register_model(
        ModelEntry(
            card=ModelCard(
                name=f"aos-{_variant}",
                method=f"AOS ({_what.split(':')[0]} ablation)",
                paper="Huang et al., Adversarially Occluded Samples for Person Re-identification, CVPR 2018 (Table 1)",
                code="huanghoujing/AOS4ReID",
                num_classes=96,
                recipe="aos",
                recipe_options={"variant": _variant},
                ablation_of="aos",
                deviations=COMMON_DEVIATIONS + (f"The ablation of AOS's Table 1 in which the occluding square's position is {_what}.",),
                **EMBEDDED,  # type: ignore[arg-type]
            ),
        )
    )
