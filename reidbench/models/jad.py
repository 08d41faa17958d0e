"""JAD: joint adversarial defense (proactive augmentation + passive circuitous scaling).

Paper: Yunpeng Gong, Liqing Huang and Lifei Chen, "Person Re-identification Method Based on Color
Attack and Joint Defence" (the LTA attack and the JAD defense), CVPR Workshops 2022,
https://arxiv.org/abs/2111.09571. Code: https://github.com/finger-monkey/LTA_and_joint-defence.

Proactive part: a training augmentation (grayscale, channel fusion with the gray or sketch image,
AutoAugment-like ops, and local homogeneous transforms), the ``jad`` recipe,
``reidbench.train.recipes.jad``.

Passive part: circuitous scaling (CS) at inference, the ``cs`` defense
(``reidbench.defenses.cs``). It is part of this model's inference path: the card names it
(``inference_defense="cs"``) and ``reidbench.zoo.create_model`` installs it as the model's
``input_transform``. The model option ``cs=False`` leaves it out, to study attacks with and
without it. This module only declares it, since models sit below defenses.
"""

from __future__ import annotations

from reidbench.models.baseline import COMMON_DEVIATIONS, EMBEDDED
from reidbench.models.card import ModelCard, PaperResult
from reidbench.models.registry import ModelEntry, register_model

register_model(
    ModelEntry(
        card=ModelCard(
            name="jad",
            method="JAD",
            paper="Gong et al., Person Re-identification Method Based on Color Attack and Joint Defence (LTA/JAD), CVPR-W 2022",
            code="finger-monkey/LTA_and_joint-defence",
            num_classes=96,
            recipe="jad",
            inference_defense="cs",
            paper_results=(
                PaperResult("Market-1501", "none", 91.0, 85.0, "JAD", "JAD paper, with re-ranking"),
                PaperResult("Market-1501", "mifgsm", 61.3, 56.8, "JAD", "JAD paper, with re-ranking, oblivious"),
                PaperResult("Market-1501", "sma", 85.6, 80.3, "JAD", "JAD paper, with re-ranking, oblivious"),
                PaperResult("Market-1501", "lta", 66.2, 63.9, "JAD", "JAD paper, with re-ranking, oblivious"),
                PaperResult("Market-1501", "none", 90.2, 84.7, "baseline", "JAD paper, with re-ranking"),
                PaperResult("Market-1501", "mifgsm", 13.2, 13.0, "baseline", "JAD paper, with re-ranking"),
                PaperResult("Market-1501", "sma", 17.6, 20.0, "baseline", "JAD paper, with re-ranking"),
                PaperResult("Market-1501", "lta", 14.2, 16.1, "baseline", "JAD paper, with re-ranking"),
            ),
            deviations=COMMON_DEVIATIONS + (
                "The paper's numbers were measured with an attacker oblivious to circuitous scaling; reidbench "
                "reports the adaptive attack (through CS) as well.",
                "CF keeps 1 or 2 RGB channels as the paper's text says (the code's random_choose in multimodal.py "
                "takes 3 of [R,G,B,gray,gray], which allows 3); the AutoAugment-like op draws one of posterize, "
                "equalize, solarize, contrast, invert.",
                "The augmentation is applied to the raw image before flip, pad-crop and random erasing.",
            ),
            **EMBEDDED,  # type: ignore[arg-type]
        ),
        options={"cs": True},
        inference_switch="cs",
    )
)
