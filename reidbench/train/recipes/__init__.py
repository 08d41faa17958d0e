"""The training recipes, one module each; importing this package registers them all.

A recipe module holds what only training needs (augmentations, losses, optimisers, extra stages);
the model's architecture, card and inference path stay in ``reidbench.models``.
"""

from reidbench.train.recipes.advtrain import AdvTrainRecipe
from reidbench.train.recipes.aos import AOSRecipe
from reidbench.train.recipes.apd import APDRecipe  # noqa: F401  (importing it registers the recipe)
from reidbench.train.recipes.baseline import BaselineRecipe
from reidbench.train.recipes.etndnet import ETNDNetRecipe
from reidbench.train.recipes.fed import FEDRecipe
from reidbench.train.recipes.igoas import IGOASRecipe
from reidbench.train.recipes.jad import JADRecipe

__all__ = ["AOSRecipe", "AdvTrainRecipe", "BaselineRecipe", "ETNDNetRecipe", "FEDRecipe", "IGOASRecipe", "JADRecipe"]
