"""The recipe registry: training strategies by name, and the recipe a registered model trains with.

Recipes are keyed by their own name, not by model: a model card says which recipe makes it
(``ModelCard.recipe``), so a new model that trains like an existing one (another backbone, another
dataset, an ablation) only needs its card, not a recipe module of its own.
"""

from __future__ import annotations

from typing import Any

from reidbench.errors import UnknownNameError
from reidbench.models.registry import MODELS
from reidbench.registry import Registry
from reidbench.train.trainer import Recipe

RECIPES: Registry[type[Recipe]] = Registry("recipe")


def register_recipe(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator: register ``cls`` under ``cls.name``."""
    RECIPES.add(cls.name, cls)
    return cls


def recipe_for(model: str) -> type[Recipe]:
    """The recipe class that the card of registered model ``model`` names."""
    card = MODELS.get(model).card
    if card.recipe not in RECIPES:
        raise UnknownNameError(
            f"model {model!r} names recipe {card.recipe!r} on its card, which is not registered; "
            f"the recipes are: {', '.join(RECIPES.names())}"
        )
    return RECIPES.get(card.recipe)


def create_recipe(model: str, **options: Any) -> Recipe:
    """The recipe that trains registered model ``model``, with recipe ``options``."""
    return recipe_for(model)(**{**MODELS.get(model).card.recipe_options, **options})
