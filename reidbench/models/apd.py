"""APD-like: adversarial perturbation (MPG-Net) and defense (SP-Net with SSD), from the abstract.

Paper: Hongchen Tan et al., "Adversarial perturbation and defense for generalizable person
re-identification", Neural Networks 186:107287, 2025, https://doi.org/10.1016/j.neunet.2025.107287.
Code: not public, and only the abstract is. It names three parts: a Metric-Perturbation
Generation Network (MPG-Net) that synthesises hard matching samples by perturbing the metric
relationship of samples in the latent space while keeping their visual detail; a Semantic
Purification Network (SP-Net), the re-ID model trained on those samples; and a Semantic
Self-perturbation and Defense (SSD) scheme inside SP-Net. reidbench builds each from that
description alone, so this is "APD-like", and every choice is on the card below:

* MPG-Net: ``reidbench.models.mpg_net`` (architecture, weights files);
* SP-Net: the BNNeck baseline network of the card's backbone (the inference path is the
  baseline's; APD is its training);
* SSD and the three training stages: the ``apd`` recipe, ``reidbench.train.recipes.apd``.

The trained generator is also an attack: ``reidbench train --model apd`` writes it beside the
checkpoint (``NAME.mpg.safetensors``), and ``reidbench.attacks.mpg`` applies it feed-forward.
"""

from __future__ import annotations

from reidbench.models.baseline import COMMON_DEVIATIONS, EMBEDDED
from reidbench.models.card import ModelCard
from reidbench.models.registry import ModelEntry, register_model

register_model(
    ModelEntry(
        card=ModelCard(
            name="apd",
            method="APD-like",
            paper="Tan et al., Adversarial perturbation and defense for generalizable person re-identification, "
                  "Neural Networks 186:107287, 2025 (https://doi.org/10.1016/j.neunet.2025.107287)",
            code="not public (only the abstract is): built from the abstract",
            num_classes=96,
            recipe="apd",
            notes="APD-like: the paper's code and full text are not public; MPG-Net, SP-Net and SSD are reidbench's "
                  "reading of the abstract, each choice listed under deviations. The trained MPG-Net is also the "
                  "`mpg` attack.",
            deviations=COMMON_DEVIATIONS + (
                "Built from the abstract alone (code and full text not public): every loss, weight and layer below "
                "is reidbench's choice, not the paper's.",
                "The paper targets domain generalisation (train on source domains, test on unseen ones); the "
                "embedded default trains and tests on one synthetic domain, so only robustness is measured here.",
                "Three stages on the shared trainer's schedule, each the full schedule: (1) the baseline recipe as "
                "the network to attack (or recipe option stage1_checkpoint), (2) MPG-Net against it, frozen, "
                "(3) SP-Net from the same initialisation as stage 1.",
                "MPG-Net: an image-to-image conv encoder-decoder (16-32-64 channels down to 1/8, two residual "
                "blocks, bilinear upsampling with U-Net skips, instance norm; ~0.2M parameters) whose output is "
                "eps * tanh(.), eps 5/255 (recipe option eps), so every sample stays in the L-inf ball.",
                "MPG-Net's metric loss: cos(f(x'), own identity centre) - cos(f(x'), nearest other identity centre) "
                "on the frozen network's L2-normalised embedding; centres are the normalised means of clean, "
                "un-augmented training embeddings; the nearest other centre is chosen from the clean embedding.",
                "MPG-Net's detail loss: 0.1 * mean|x' - x| / eps + 0.1 * (1 - SSIM(x', x)) (7x7 Gaussian window, "
                "sigma 1.5, per channel); SSIM rather than a perceptual loss, which would need ImageNet features "
                "that the embedded default does not have. The weights are chosen so that the metric term "
                "dominates (the L-inf bound already limits visibility), not tuned.",
                "MPG-Net is trained once against the stage-1 network and then frozen; it is not updated against "
                "SP-Net while SP-Net trains (the abstract does not say whether the two alternate).",
                "SP-Net: every batch and its MPG-Net twin, loss 0.5 * L(clean) + 0.5 * L(hard), each the baseline's "
                "CE + triplet.",
                "SSD: a third pass of the hard batch in which the network drops each channel of its own "
                "backbone.layer2 output (the middle of the backbone) with probability 0.2 per image (survivors "
                "scaled by 1/0.8), and a consistency loss 1 - cos(perturbed embedding, stop-gradient of the "
                "unperturbed one), weight 1. Random channels rather than gradient-chosen ones (RSC-style), "
                "which the abstract does not specify.",
                "The generator is written beside the checkpoint as NAME.mpg.safetensors with a JSON card "
                "(surrogate, data, eps, losses); shipped as reidbench/models/weights/mpg.safetensors for the "
                "mpg attack.",
            ),
            **EMBEDDED,  # type: ignore[arg-type]
        ),
    )
)
