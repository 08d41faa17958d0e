"""Create an attack by name from parameters in the CLI's units.

Budgets are given in /255 units (``eps=5``, ``step=1``), as users and papers write them; every
attack class takes [0,1] units. :func:`attack_params` gives the full parameter set of a cell in
the CLI's units (for result rows); :func:`create_attack` converts and builds the attack, whose
constructor validates ranges (messages in the CLI's units).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from reidbench.attack_types import PIXEL_PARAMS, AttackEntry, Family
from reidbench.attacks.base import ATTACKS
from reidbench.attacks.classification import SCALE, THREAT, generic_attack
from reidbench.errors import ParameterError
from reidbench.params import parse_bool

TK_PREFIX = "tk:"
TK_DEFAULTS: dict[str, Any] = {"scale": SCALE, "batch_invariant": True}


def is_torchattacks(name: str) -> bool:
    return name.lower().startswith(TK_PREFIX)


def canonical_name(name: str) -> str:
    """``tk:pgd`` -> ``tk:PGD``; registered names are returned as they are."""
    return generic_attack(name).name if is_torchattacks(name) else name


def attack_entry(name: str) -> AttackEntry:
    """The registry entry of attack ``name``; ``tk:NAME`` gets an entry built on the fly (the
    torchattacks class on the gallery-identity classifier, matched case-insensitively)."""
    if is_torchattacks(name):
        cls = generic_attack(name)
        return AttackEntry(cls.name, cls, Family.CLASSIFICATION, THREAT, dict(TK_DEFAULTS),
                           f"torchattacks.{cls.tk_name} on the gallery-identity classifier")
    return ATTACKS.get(name)


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """Strings from the command line, read as the type of the parameter's default."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    low = value.strip().lower()
    if isinstance(default, bool):
        return parse_bool(value, name, key)
    if low in ("none", "null"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ParameterError(f"{name}: {key} must be a number, not {value!r}") from None
    return int(number) if isinstance(default, int) and number.is_integer() else number


def _normalise(value: Any, default: Any) -> Any:
    """A number as the type of its default, so ``--eps 5`` given as 5.0 is the cell ``eps=5``:
    cell ids hash the parameters, and must not depend on how a number was typed."""
    if isinstance(value, bool) or isinstance(default, bool):
        return value
    if isinstance(value, float) and value.is_integer() and not isinstance(default, float):
        return int(value)
    if isinstance(value, int) and isinstance(default, float):
        return float(value)
    if isinstance(value, (list, tuple)):
        defaults = list(default) if isinstance(default, (list, tuple)) else []
        return [_normalise(v, defaults[i] if i < len(defaults) else None) for i, v in enumerate(value)]
    return value


def attack_params(name: str, **overrides: Any) -> dict[str, Any]:
    """Every parameter of attack ``name`` with ``overrides`` applied, in the CLI's units.

    An unknown parameter name raises :class:`ParameterError` naming the valid ones. For
    ``tk:NAME`` any keyword is accepted here (torchattacks' own names are checked on creation).
    """
    entry = attack_entry(name)
    defaults = entry.defaults
    if not is_torchattacks(name):
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise ParameterError(
                f"attack {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {', '.join(defaults) or 'none'}"
            )
    params = dict(defaults)
    for key, value in overrides.items():
        value = _coerce(name, key, value, defaults.get(key))
        params[key] = _normalise(value, defaults.get(key))
    return params


def create_attack(name: str, model: nn.Module | None, **params: Any) -> Any:
    """Build attack ``name`` for ``model`` from parameters in the CLI's units.

    ``eps``, ``step`` (and torchattacks' ``alpha`` for ``tk:NAME``) are in /255 units and are
    divided by 255; the rest pass as they are. The result carries ``cli_params``, the resolved
    parameters in the CLI's units. Example: ``create_attack("mifgsm", model, eps=8, steps=20)``;
    ``create_attack("tk:PGD", model, eps=8, alpha=2, steps=10)``.
    """
    resolved = attack_params(name, **params)
    cls = attack_entry(name).cls
    kwargs = {}
    for key, value in resolved.items():
        if key in PIXEL_PARAMS and value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ParameterError(f"{name}: {key} must be a number in /255 units, not {value!r}")
            value = value / 255
        kwargs[key] = value
    attack = cls(model, **kwargs)
    attack.cli_params = resolved
    return attack
