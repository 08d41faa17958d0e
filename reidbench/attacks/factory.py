"""Create an attack by name from parameters in the CLI's units.

Budgets are given in /255 units (``eps=5``, ``step=1``), as users and papers write them; every
attack class takes [0,1] units. :func:`attack_params` gives the full parameter set of a cell in
the CLI's units (for result rows); :func:`create_attack` converts and builds the attack, whose
constructor validates ranges (messages in the CLI's units).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from reidbench.attacks.base import ATTACKS
from reidbench.attacks.classification import SCALE, generic_attack
from reidbench.errors import ParameterError

PIXEL_PARAMS = ("eps", "step", "alpha")  # in /255 units on the command line
TK_PREFIX = "tk:"
TK_DEFAULTS: dict[str, Any] = {"scale": SCALE, "batch_invariant": True}


def _coerce(name: str, key: str, value: Any, default: Any) -> Any:
    """Strings from the command line, read as the type of the parameter's default."""
    if not isinstance(value, str) or isinstance(default, str):
        return value
    low = value.strip().lower()
    if isinstance(default, bool):
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ParameterError(f"{name}: {key} must be true or false, not {value!r}")
    if low in ("none", "null"):
        return None
    try:
        number = float(value)
    except ValueError:
        raise ParameterError(f"{name}: {key} must be a number, not {value!r}") from None
    return int(number) if isinstance(default, int) and number.is_integer() else number


def attack_params(name: str, **overrides: Any) -> dict[str, Any]:
    """Every parameter of attack ``name`` with ``overrides`` applied, in the CLI's units.

    An unknown parameter name raises :class:`ParameterError` naming the valid ones. For
    ``tk:NAME`` any keyword is accepted here (torchattacks' own names are checked on creation).
    """
    if name.startswith(TK_PREFIX):
        generic_attack(name)
        defaults = dict(TK_DEFAULTS)
    else:
        defaults = ATTACKS.get(name).defaults
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise ParameterError(
                f"attack {name!r} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {', '.join(defaults) or 'none'}"
            )
    params = dict(defaults)
    for key, value in overrides.items():
        value = _coerce(name, key, value, defaults.get(key))
        params[key] = list(value) if isinstance(value, tuple) else value
    return params


def create_attack(name: str, model: nn.Module | None, **params: Any) -> Any:
    """Build attack ``name`` for ``model`` from parameters in the CLI's units.

    ``eps``, ``step`` (and torchattacks' ``alpha`` for ``tk:NAME``) are in /255 units and are
    divided by 255; the rest pass as they are. The result carries ``cli_params``, the resolved
    parameters in the CLI's units. Example: ``create_attack("mifgsm", model, eps=8, steps=20)``;
    ``create_attack("tk:PGD", model, eps=8, alpha=2, steps=10)``.
    """
    resolved = attack_params(name, **params)
    cls = generic_attack(name) if name.startswith(TK_PREFIX) else ATTACKS.get(name).cls
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
