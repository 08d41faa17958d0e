"""Attacks: metric attacks, classification attacks, test-time occlusions, feature-map
perturbations and random noise, all in one registry.

``create_attack(name, model, **params)`` builds one from parameters in the CLI's units (eps and
step in /255); ``attack_params(name, **overrides)`` resolves the full parameter set for result
rows; ``ATTACKS.names("*")`` lists them. Importing this package registers every attack module.
Each entry carries a :class:`Family`, a structured :class:`Threat` and its capability flags
(:mod:`reidbench.attack_types`); code that branches on the kind of an attack asks those.

===================  ==============  ===========================================================
family               names           what the attacker knows
===================  ==============  ===========================================================
metric               mifgsm, ifgsm,  the embedding (white-box); M-IFGSM/FNA also the labels and
                     fgsm, sma, fna, the other set's same-id embeddings, FNA the gallery means
                     lta
classification       pgd, apgd-ce,   the gallery identities' mean embeddings (gallery-aware)
                     apgd-dlr,
                     square, cw,
                     tk:NAME
occlusion            erasing,        nothing (erasing, npo) or the embedding's scores
                     aos-window, npo (aos-window)
feature-map          fmap-erase,     not an input attack: perturbs the backbone map
                     fmap-transform,
                     fmap-noise
noise                noise           nothing
===================  ==============  ===========================================================
"""

from reidbench.attack_types import PIXEL_PARAMS, Access, AttackEntry, Budget, Family, Threat
from reidbench.attacks.base import (
    ATTACKS,
    AttackContext,
    FeatureMapAttack,
    GradStats,
    InputAttack,
    MetricAttack,
    image_generators,
    image_seed,
    register_attack,
)

# Importing an attack module registers it.
from reidbench.attacks import mifgsm as _mifgsm  # noqa: E402,F401  isort: skip
from reidbench.attacks import sma as _sma  # noqa: E402,F401  isort: skip
from reidbench.attacks import fna as _fna  # noqa: E402,F401  isort: skip
from reidbench.attacks import lta as _lta  # noqa: E402,F401  isort: skip
from reidbench.attacks import classification as _classification  # noqa: E402,F401  isort: skip
from reidbench.attacks import erasing as _erasing  # noqa: E402,F401  isort: skip
from reidbench.attacks import aos_window as _aos_window  # noqa: E402,F401  isort: skip
from reidbench.attacks import npo as _npo  # noqa: E402,F401  isort: skip
from reidbench.attacks import ntp as _ntp  # noqa: E402,F401  isort: skip
from reidbench.attacks import feature_map as _feature_map  # noqa: E402,F401  isort: skip
from reidbench.attacks import noise as _noise  # noqa: E402,F401  isort: skip
from reidbench.attacks import mpg as _mpg  # noqa: E402,F401  isort: skip
from reidbench.attacks.classification import ClassificationAttack, GalleryClassifier  # noqa: E402
from reidbench.attacks.factory import attack_entry, attack_params, canonical_name, create_attack  # noqa: E402

__all__ = [
    "ATTACKS",
    "PIXEL_PARAMS",
    "Access",
    "Budget",
    "Family",
    "Threat",
    "AttackContext",
    "AttackEntry",
    "ClassificationAttack",
    "FeatureMapAttack",
    "GalleryClassifier",
    "GradStats",
    "InputAttack",
    "MetricAttack",
    "attack_entry",
    "attack_params",
    "canonical_name",
    "create_attack",
    "image_generators",
    "image_seed",
    "register_attack",
]
