"""One home for parameter validation: every check raises :class:`ParameterError` with one line
naming the component, the parameter, the value given and the range to use.

Attacks validate the values their constructors receive (already numbers); defenses also accept
the strings a command line passes, so the checks coerce where asked (``coerce=True``) and return
the value to keep. :func:`parse_bool` is the one reader of true/false words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from reidbench.errors import ParameterError

TRUE_WORDS = ("true", "1", "yes", "on")
FALSE_WORDS = ("false", "0", "no", "off")


def fmt(x: float) -> str:
    """``5`` for whole numbers, 4 significant digits otherwise."""
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def parse_bool(value: Any, who: str, name: str) -> bool:
    """A bool; the words a command line passes (true/false, 1/0, yes/no, on/off) are accepted."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ParameterError(f"{who}: {name} must be true or false, not {value!r}")


def _as_number(value: Any, integer: bool, coerce: bool) -> float | int | None:
    """``value`` as a number, or None when it is not one (bools are not numbers here)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (not integer and isinstance(value, float)):
        return value
    if not coerce:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None
    if integer:
        return int(number) if number.is_integer() else None
    return number


def check_range(who: str, name: str, value: Any, lo: float, hi: float, *, integer: bool = False,
                scale: float = 1.0, unit: str = "", lo_open: bool = False, coerce: bool = False) -> Any:
    """``lo <= value <= hi`` (``lo < value`` with ``lo_open``; an int when ``integer``).

    The message shows ``value * scale`` and ``unit`` (budgets in [0,1] read as /255). With
    ``coerce`` a string or float holding a valid number is accepted and returned as a number.
    """
    number = _as_number(value, integer, coerce)
    ok = number is not None and (lo < number if lo_open else lo <= number) and number <= hi
    if not ok:
        shown = fmt(number * scale) if number is not None else repr(value)
        kind = "an integer" if integer else "a number"
        op = "<" if lo_open else "<="
        raise ParameterError(
            f"{who}: {name} {shown}{unit if number is not None else ''} is out of range; use {kind} with "
            f"{fmt(lo * scale)} {op} {name} <= {fmt(hi * scale)}{unit}"
        )
    return number if coerce else value


def check_choice(who: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise ParameterError(f"{who}: {name} must be one of {', '.join(map(repr, choices))}, not {value!r}")
    return value


def check_eps(eps: float, who: str) -> None:
    """``eps`` in [0,1] units; reject negative and absurd budgets (> 64/255)."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps <= 64 / 255:
        shown = f"{eps * 255:.3g}/255" if isinstance(eps, (int, float)) and not isinstance(eps, bool) else repr(eps)
        raise ParameterError(f"{who}: eps {shown} is out of range; use 0 <= eps <= 64 (in /255 units)")


def check_area(who: str, area: float | None, lo: float = 0.01, hi: float = 0.9) -> None:
    """An occluded fraction of the image: ``None`` (the paper's random range) or a number in [lo, hi]."""
    if area is not None:
        check_range(who, "area", area, lo, hi)


def check_size(who: str, name: str, value: Any) -> tuple[int, int]:
    """A (height, width) pair of positive integers; ``"110x50"`` is accepted too."""
    if isinstance(value, str):
        value = value.lower().split("x")
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ParameterError(f"{who}: {name} must be (height, width) or 'HxW', got {value!r}") from None
    if h < 1 or w < 1:
        raise ParameterError(f"{who}: {name} must be positive, got {h}x{w}")
    return h, w
