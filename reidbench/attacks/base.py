"""What every registered attack is, and what the harness gives it.

Three kinds of attack share one registry (``ATTACKS``):

* **input attacks** (:class:`InputAttack`): take images in [0,1] and return perturbed images in
  [0,1]. Metric attacks (M-IFGSM, SMA, FNA, LTA, I-FGSM, FGSM) and the classification wrapper are
  subclasses of ``torchattacks.Attack`` through :class:`MetricAttack`; occlusions and random noise
  are plain input attacks (no gradient).
* **feature-map attacks** (:class:`FeatureMapAttack`): perturb the backbone's map between backbone
  and head during test-time extraction (ETNDNet Fig. 6a).

The harness hands an attack only what its threat model allows, through :class:`AttackContext`:
the identities of the attacked images only to attacks with ``uses_labels = True``, the other
set's features only to attacks that use guides, the gallery prototypes only to gallery-aware
attacks. Everything an attacker is given is listed in its ``threat`` text, which goes into every
result row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torchattacks
from torch import nn

from reidbench.errors import ModelModeError, ParameterError
from reidbench.registry import Registry


@dataclass
class AttackContext:
    """Side information for one attacked set, filled by the harness per the attack's needs.

    ``guide_*``: clean embeddings, pids and camids of the *other* set (for query attacks: the
    gallery; for gallery attacks: the queries). ``proto_*``: the mean clean gallery embedding of
    each gallery identity. ``seed`` seeds all of the attack's randomness.
    """

    guide_feats: torch.Tensor | None = None
    guide_pids: torch.Tensor | None = None
    guide_camids: torch.Tensor | None = None
    proto_feats: torch.Tensor | None = None
    proto_pids: torch.Tensor | None = None
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def check_images(x: torch.Tensor, who: str) -> None:
    """Inputs must be float images in [0,1]; torchattacks 3.5 no longer checks this itself."""
    if not torch.is_floating_point(x):
        raise ParameterError(f"{who}: images must be float tensors in [0,1], got {x.dtype}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ParameterError(
            f"{who}: images must lie in [0,1] (got min {float(x.min()):.3f}, max {float(x.max()):.3f}); "
            "attacks work in pixel space and the model normalises internally"
        )


def check_eval(model: nn.Module, who: str) -> None:
    bad = [n for n, m in model.named_modules() if m.training]
    if bad:
        raise ModelModeError(
            f"{who}: refusing to attack a model in train mode ({len(bad)} module(s), first "
            f"{bad[0] or type(model).__name__!r}); BatchNorm/dropout would change the numbers. Call model.eval()."
        )


def check_eps(eps: float, who: str) -> None:
    """``eps`` in [0,1] units; reject negative and absurd budgets (> 64/255)."""
    if not 0.0 <= eps <= 64 / 255:
        raise ParameterError(f"{who}: eps {eps * 255:.3g}/255 is out of range; use 0 <= eps <= 64 (in /255 units)")


class InputAttack:
    """An attack that maps images in [0,1] to images in [0,1].

    Subclasses set the class attributes and implement ``perturb``. ``__call__`` refuses a model in
    train mode and inputs outside [0,1], and puts nothing but the images (and, for label-using
    attacks, their pids) in the attacker's hands.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = ""
    threat: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = False
    uses_guides: ClassVar[bool] = False
    uses_prototypes: ClassVar[bool] = False
    differentiable: ClassVar[bool] = False  # whether it needs gradients of the model

    def __init__(self, model: nn.Module, **params: Any) -> None:
        self.model = model
        self.params = params
        self.context = AttackContext()

    def set_context(self, context: AttackContext) -> None:
        self.context = context

    def perturb(self, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        check_eval(self.model, self.name)
        check_images(images, self.name)
        return self.perturb(images, labels if self.uses_labels else None)


class MetricAttack(torchattacks.Attack):
    """Base of the metric attacks: a ``torchattacks.Attack`` with reidbench's checks.

    Subclasses implement ``forward(images, labels)``; they call :meth:`project` after every step
    (L-inf ball around the clean images, then [0,1]). The model returns embeddings.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "metric"
    threat: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = False
    uses_guides: ClassVar[bool] = False
    uses_prototypes: ClassVar[bool] = False
    differentiable: ClassVar[bool] = True

    def __init__(self, model: nn.Module, eps: float = 5 / 255, **params: Any) -> None:
        super().__init__(type(self).__name__, model)
        check_eps(eps, self.name)
        self.eps = eps
        self.params = {"eps": eps, **params}
        self.context = AttackContext()

    def set_context(self, context: AttackContext) -> None:
        self.context = context

    def project(self, adv: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        delta = torch.clamp(adv - images, min=-self.eps, max=self.eps)
        return torch.clamp(images + delta, min=0.0, max=1.0).detach()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        check_eval(self.model, self.name)
        check_images(images, self.name)
        return super().__call__(images, labels if self.uses_labels else None)


class FeatureMapAttack:
    """A perturbation of the backbone's feature map at test time (between backbone and head).

    ``hook(batch_index)`` returns the function applied to each batch's map; randomness is drawn
    from ``seed`` and the batch index, so extraction in any batch size order is reproducible.
    """

    name: ClassVar[str] = ""
    family: ClassVar[str] = "feature-map"
    threat: ClassVar[str] = ""
    uses_labels: ClassVar[bool] = False
    uses_guides: ClassVar[bool] = False
    uses_prototypes: ClassVar[bool] = False
    differentiable: ClassVar[bool] = False

    def __init__(self, model: nn.Module | None = None, **params: Any) -> None:
        self.model = model
        self.params = params
        self.context = AttackContext()

    def set_context(self, context: AttackContext) -> None:
        self.context = context

    def hook(self, batch_index: int) -> Callable[[torch.Tensor], torch.Tensor]:
        raise NotImplementedError


@dataclass(frozen=True)
class AttackEntry:
    """A registered attack: its class, defaults (eps/step in /255 units) and description."""

    name: str
    cls: type
    family: str
    threat: str
    defaults: dict[str, Any]
    description: str


ATTACKS: Registry[AttackEntry] = Registry("attack")


def register_attack(name: str, *, family: str, threat: str, defaults: dict[str, Any], description: str) -> Callable[[type], type]:
    """Class decorator: register an attack class under ``name``."""

    def deco(cls: type) -> type:
        cls.name = name  # type: ignore[attr-defined]
        cls.family = family  # type: ignore[attr-defined]
        cls.threat = threat  # type: ignore[attr-defined]
        ATTACKS.add(name, AttackEntry(name, cls, family, threat, dict(defaults), description))
        return cls

    return deco
