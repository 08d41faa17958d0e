"""Re-ID models: the interface, backbones, cards, checkpoints and the registry.

``create_network(name)`` builds a registered model's network with its shipped checkpoint;
``list_models()`` lists the cards. Importing this package registers every model module below.

This package holds what a model *is* (architecture, card, inference-path options). How it is
trained is in ``reidbench.train`` (the card names its recipe), and a defense that is part of its
inference path (JAD's circuitous scaling) is installed by ``reidbench.zoo.create_model``: both sit
above ``reidbench.models``, which imports neither.
"""

from reidbench.models.base import ReIDModel, TrainOutput, check_eval_mode
from reidbench.models.card import ModelCard, PaperResult
from reidbench.models.registry import (
    MODELS,
    ModelEntry,
    create_network,
    inference_defense,
    list_models,
    model_card,
    register_model,
)

# Importing a model module registers it.
from reidbench.models import baseline as _baseline  # noqa: E402,F401  isort: skip
from reidbench.models import etndnet as _etndnet  # noqa: E402,F401  isort: skip
from reidbench.models import igoas as _igoas  # noqa: E402,F401  isort: skip
from reidbench.models import jad as _jad  # noqa: E402,F401  isort: skip
from reidbench.models import aos as _aos  # noqa: E402,F401  isort: skip
from reidbench.models import advtrain as _advtrain  # noqa: E402,F401  isort: skip
from reidbench.models import fed as _fed  # noqa: E402,F401  isort: skip
from reidbench.models import apd as _apd  # noqa: E402,F401  isort: skip

__all__ = [
    "MODELS",
    "ModelCard",
    "ModelEntry",
    "PaperResult",
    "ReIDModel",
    "TrainOutput",
    "check_eval_mode",
    "create_network",
    "inference_defense",
    "list_models",
    "model_card",
    "register_model",
]
