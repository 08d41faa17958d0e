"""Training: the shared trainer, the recipes and the driver that makes a registered model.

``train_registered("etndnet", dataset="synthetic-mini")`` trains a registered model with the
recipe its card names and writes the checkpoint with its card; ``reidbench train`` is its command
line. ``train(model, recipe, images, labels, camids, cfg)`` is the trainer itself.

Training sits above models, attacks and defenses: adversarial training crafts attacks, and every
recipe trains a ``reidbench.models`` network. Nothing below this package imports it. Importing it
registers every recipe in ``reidbench.train.recipes``.
"""

from reidbench.train.registry import RECIPES, create_recipe, recipe_for, register_recipe
from reidbench.train.trainer import Recipe, TrainConfig, TrainContext, reid_loss, train
from reidbench.train.training import default_config, train_registered

# Importing a recipe module registers it.
from reidbench.train import recipes as _recipes  # noqa: E402,F401  isort: skip

__all__ = [
    "RECIPES",
    "Recipe",
    "TrainConfig",
    "TrainContext",
    "create_recipe",
    "default_config",
    "recipe_for",
    "register_recipe",
    "reid_loss",
    "train",
    "train_registered",
]
