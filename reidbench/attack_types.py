"""What the harness, the sanity checks and the reports know about an attack: typed metadata.

Three records describe a registered attack:

* :class:`Family`, the kind of an attack, with the traits that decide how a cell of that kind is
  run and read (does it perturb pixels or the feature map, is it an adversarial optimisation, is
  it bounded in L-inf). Result rows store the family's name, so a report can ask the traits of a
  row without importing the attack. Families are registered (:func:`register_family`), so a new
  one is added by the module of its first attack.
* :class:`Threat`, the threat model as data: how the attacker reaches the model
  (:class:`Access`), what side information it is given, and its budget (:class:`Budget`). The
  prose in ``reidbench list attacks``, the manifest and every result row is rendered from it.
* :class:`AttackEntry`, the registry entry: the class, its family and threat, its defaults (read
  from the constructor's signature, ``eps``/``step`` converted to /255 units) and the capability
  flags the harness asks (``uses_labels``, ``uses_guides``...).

Code that branches on the kind of an attack asks these traits and flags, never a family string.
This module imports nothing heavy, so result rows, reports and the CI check can use it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

#: Parameters given in /255 units on the command line and in result rows; the attack classes
#: take them in [0,1] units.
PIXEL_PARAMS = ("eps", "step", "alpha")


@dataclass(frozen=True)
class Family:
    """A kind of attack and the traits that decide how its cells are run and read.

    Result rows store ``name``; :meth:`of` turns it back into the family. The built-in families
    are class attributes (``Family.METRIC``); a new one is one :func:`register_family` call in the
    module of its first attack, and nothing else changes.
    """

    name: str
    #: maps images to images: the attacked images exist and can be shown and measured
    perturbs_pixels: bool = True
    #: perturbs the backbone's map between backbone and head at extraction time
    perturbs_feature_map: bool = False
    #: an adversarial optimisation against the model: the white-box sanity checks apply, and a
    #: defense has an adaptive mode worth reading beside the oblivious one
    optimised: bool = False
    #: its eps, when it has one, bounds ||x_adv - x||_inf (the harness verifies it)
    linf_family: bool = False
    #: covers part of the image: swept over the occluded area rather than eps
    occludes: bool = False
    #: attacks a classifier over the gallery identities, so it knows their mean embeddings
    gallery_aware: bool = False
    #: random noise in the eps ball: the floor a white-box attack must beat
    random_control: bool = False

    CLEAN: ClassVar[Family]
    METRIC: ClassVar[Family]
    CLASSIFICATION: ClassVar[Family]
    NOISE: ClassVar[Family]
    OCCLUSION: ClassVar[Family]
    FEATURE_MAP: ClassVar[Family]

    def __str__(self) -> str:
        return self.name

    @property
    def value(self) -> str:
        """What result rows store."""
        return self.name

    @property
    def order(self) -> int:
        """Position in tables and figures: the order of registration (unregistered ones last)."""
        names = list(FAMILIES)
        return names.index(self.name) if self.name in names else len(names)

    @classmethod
    def of(cls, value: str | Family) -> Family:
        """The family of a stored row.

        A name nobody registered in this process (a row from a plugin attack whose module is not
        imported) gets a family without traits: it is shown, but no check or figure assumes
        anything about it.
        """
        if isinstance(value, Family):
            return value
        return FAMILIES.get(value) or Family(str(value), perturbs_pixels=False)


#: name -> family, in registration order
FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    if family.name in FAMILIES:
        raise ValueError(f"attack family {family.name!r} is already registered")
    FAMILIES[family.name] = family
    return family


Family.CLEAN = register_family(Family("clean", perturbs_pixels=False))
Family.METRIC = register_family(Family("metric", optimised=True, linf_family=True))
Family.CLASSIFICATION = register_family(Family("classification", optimised=True, linf_family=True, gallery_aware=True))
Family.NOISE = register_family(Family("noise", linf_family=True, random_control=True))
Family.OCCLUSION = register_family(Family("occlusion", occludes=True))
Family.FEATURE_MAP = register_family(Family("feature-map", perturbs_pixels=False, perturbs_feature_map=True))


class Access(str, Enum):
    """How the attacker reaches the model."""

    WHITE_BOX = "white-box"  # gradients of the model
    SCORES = "score-based"  # outputs only, no gradients
    NONE = "no knowledge of the model"
    INTERNAL = "not an input attack"  # a perturbation inside the model (feature map)

    def __str__(self) -> str:
        return self.value


class Budget(str, Enum):
    """What bounds the perturbation."""

    LINF = "L-inf budget eps"
    L2 = "L2, no eps (not comparable with L-inf budgets)"
    AREA = "area"  # an occluded or perturbed fraction, described in ``Threat.scope``
    NONE = "none"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Threat:
    """An attack's threat model.

    ``how`` qualifies the access ("on the embedding"), ``knows`` is the side information it is
    given ("" when it needs nothing), ``scope`` says what is perturbed when the budget is an area.
    """

    access: Access
    how: str = ""
    knows: str = ""
    budget: Budget = Budget.NONE
    scope: str = ""

    def access_text(self) -> str:
        if self.access is Access.INTERNAL:
            return f"{self.access.value}: {self.how}"
        return f"{self.access.value} {self.how}".strip()

    def rest_text(self) -> str:
        """Side information and budget: the part a cell states after its own knowledge clause."""
        budget = self.scope if self.budget in (Budget.AREA, Budget.NONE) else self.budget.value
        return "; ".join(p for p in (self.knows, budget) if p)

    def render(self) -> str:
        """The whole threat model as one line of prose."""
        return "; ".join(p for p in (self.access_text(), self.rest_text()) if p)

    def __str__(self) -> str:
        return self.render()

    @property
    def eps_bounded(self) -> bool:
        return self.budget is Budget.LINF


def to_cli_units(key: str, value: Any) -> Any:
    """A constructor default in [0,1] units as the command line writes it (``5/255`` -> ``5``)."""
    if key in PIXEL_PARAMS and isinstance(value, float):
        v = round(value * 255, 9)
        return int(v) if v.is_integer() else v
    return list(value) if isinstance(value, tuple) else value


def signature_defaults(cls: type) -> dict[str, Any]:
    """The user-settable parameters of an attack class and their defaults, in the CLI's units.

    Every keyword of ``__init__`` after ``model`` with a default; ``**params`` catch-alls are
    skipped.
    """
    out: dict[str, Any] = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():  # type: ignore[misc]
        if name in ("self", "model") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is p.empty:
            raise TypeError(f"{cls.__name__}.__init__: parameter {name!r} needs a default to be registered")
        out[name] = to_cli_units(name, p.default)
    return out


@dataclass(frozen=True)
class AttackEntry:
    """A registered attack: its class, kind, threat model, defaults (CLI units) and flags."""

    name: str
    cls: type
    family: Family
    threat: Threat
    defaults: dict[str, Any]
    description: str

    def flag(self, name: str) -> bool:
        return bool(getattr(self.cls, name, False))

    @property
    def uses_labels(self) -> bool:
        return self.flag("uses_labels")

    @property
    def uses_guides(self) -> bool:
        return self.flag("uses_guides")

    @property
    def uses_prototypes(self) -> bool:
        return self.flag("uses_prototypes")

    @property
    def uses_occluder_bank(self) -> bool:
        return self.flag("uses_occluder_bank")

    @property
    def differentiable(self) -> bool:
        """Needs gradients of the model: it can be crafted on a surrogate and transferred."""
        return self.flag("differentiable")

    @property
    def queries_model(self) -> bool:
        """Uses the model's outputs (gradients or scores): a defense then has two modes."""
        return bool(getattr(self.cls, "queries_model", self.differentiable))

    @property
    def eps_bounded(self) -> bool:
        return self.threat.eps_bounded and "eps" in self.defaults
