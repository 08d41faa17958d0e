"""Registered models, assembled for use: the network, its weights and its whole inference path.

``create_model(name)`` is what the harness, the command line and users call. It builds the network
with :func:`reidbench.models.create_network` and then installs the defense that the model's card
puts in its inference path (``card.inference_defense``; JAD's circuitous scaling) as the model's
``input_transform``, unless the model's switch option turns it off (``options={"cs": False}``,
``--model-option jad:cs=false``). ``model.bare()`` still returns the network without it, for
oblivious evaluation.

This module sits above ``reidbench.models`` and ``reidbench.defenses``: a model declares its
inference defense by name, and only here are the two put together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reidbench.defenses import create_defense
from reidbench.models import ReIDModel, create_network, inference_defense


def create_model(
    name: str,
    *,
    checkpoint: str | Path | None = "default",
    device: str | torch.device = "cpu",
    options: dict[str, Any] | None = None,
    **card_overrides: Any,
) -> ReIDModel:
    """Build registered model ``name`` in eval mode, with the defense its inference path includes.

    ``name`` may also be ``package.module:factory`` (an external model). ``checkpoint``,
    ``options`` and ``card_overrides`` are as in :func:`reidbench.models.create_network`. The result
    has ``card`` and ``options`` attributes (external models: ``card``).
    """
    model = create_network(name, checkpoint=checkpoint, device=device, options=options, **card_overrides)
    spec = inference_defense(name, getattr(model, "options", None))
    if spec is not None:
        h, w = model.input_size
        model.input_transform = create_defense(spec, input_size=(h, w))
    return model.to(device).eval()
