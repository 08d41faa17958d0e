"""What every input-transformation defense is, the ``DEFENSES`` registry and ``create_defense``.

A defense is an ``nn.Module`` that maps images in [0,1], shaped (B, 3, H, W), to images of the
same shape in [0,1]. It runs at inference, before the model (whose normalisation is internal).

A subclass of :class:`Defense`:

* implements ``transform(x)``; the base ``forward`` checks the input and calls it;
* takes its parameters as keyword arguments with defaults (the registry reads the defaults from
  the signature, so ``reidbench list defenses`` never drifts from the code), plus ``input_size``
  (the model's (H, W), for defenses whose sizes scale with it) and, if random, ``seed``;
* validates every parameter in ``__init__`` and raises :class:`ParameterError` with one line;
* if random, draws *all* its randomness from ``self.generator`` (a CPU ``torch.Generator``), so
  every forward draws afresh and ``reseed(seed)`` makes a run reproducible on any device;
* if not differentiable, may compute ``transform`` any way it likes (PIL, numpy): the base
  ``forward`` reconnects the output to the input with a zero gradient, which *is* the true
  gradient of a piecewise-constant map (JPEG, quantisation), so an attack gets zeros rather than
  a crash. BPDA (:mod:`reidbench.defenses.adaptive`) replaces that zero by the identity;
* is registered with :func:`register_defense`, which records whether it is random and
  differentiable: the two facts that decide how an adaptive attacker gets through it (EOT for
  random, BPDA for non-differentiable).

``create_defense("jpeg+median", input_size=(256, 128), quality=50)`` builds a defense or a chain.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reidbench import params
from reidbench.errors import ParameterError
from reidbench.params import check_range, parse_bool
from reidbench.registry import Registry
from reidbench.seeding import derive_seed

#: Constructor arguments that are plumbing, not defense parameters (not listed as defaults).
PLUMBING = ("input_size", "seed")


@dataclass(frozen=True)
class DefenseEntry:
    """A registered defense: its class, its nature, its default parameters and one line of text."""

    name: str
    cls: type[Defense]
    random: bool
    differentiable: bool
    defaults: dict[str, Any]
    description: str

    @property
    def adaptive(self) -> str:
        """How an adaptive attacker gets through it."""
        return adaptive_recipe(self.random, self.differentiable)


def adaptive_recipe(random: bool, differentiable: bool) -> str:
    parts = ([] if differentiable else ["BPDA"]) + (["EOT"] if random else [])
    return " + ".join(parts) if parts else "plain gradients (deterministic and differentiable)"


DEFENSES: Registry[DefenseEntry] = Registry("defense")


def constructor_defaults(cls: type) -> dict[str, Any]:
    """The keyword defaults of ``cls.__init__``, without the plumbing arguments."""
    sig = inspect.signature(cls)
    return {
        k: p.default
        for k, p in sig.parameters.items()
        if k not in PLUMBING and p.default is not inspect.Parameter.empty
    }


def register_defense(name: str, *, random: bool, differentiable: bool, description: str) -> Callable[[type[Defense]], type[Defense]]:
    """Class decorator: register a :class:`Defense` subclass under ``name``."""

    def deco(cls: type[Defense]) -> type[Defense]:
        if "+" in name:
            raise ValueError(f"defense name {name!r} may not contain '+', which joins a chain")
        cls.name = name
        cls.random = random
        cls.differentiable = differentiable
        DEFENSES.add(name, DefenseEntry(name, cls, random, differentiable, constructor_defaults(cls), description))
        return cls

    return deco


class Defense(nn.Module):
    """Base class: images (B, 3, H, W) in [0,1] -> the same shape in [0,1]."""

    name: str = ""
    random: bool = False
    differentiable: bool = True

    def __init__(self, *, input_size: tuple[int, int] | None = None, seed: int = 0) -> None:
        super().__init__()
        self.input_size: tuple[int, int] | None = None
        if input_size is not None:
            self.input_size = check_size(self.name, "input_size", input_size)
        self.seed = int(seed)
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed)
        # A defense behaves the same in both modes; starting in eval mode keeps a freshly built
        # one from tripping the "model in train mode" checks of attacks and the harness.
        self.eval()

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reseed(self, seed: int) -> None:
        """Restart the random draws from ``seed`` (a no-op for deterministic defenses)."""
        self.seed = int(seed)
        self.generator.manual_seed(self.seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_batch(self.name, x, self.input_size)
        y = self.transform(x)
        if not self.differentiable and x.requires_grad:
            # The true derivative of a piecewise-constant map is zero almost everywhere; keep the
            # output in the graph with that zero so callers get zeros, not "not in the graph".
            y = y.detach() + x * 0.0
        return y

    def extra_repr(self) -> str:
        params = ", ".join(f"{k}={getattr(self, k)!r}" for k in constructor_defaults(type(self)) if hasattr(self, k))
        if self.random:
            params += f", seed={self.seed}"
        return params


class DefenseChain(Defense):
    """Defenses applied in order. Random if any part is; differentiable only if all are."""

    def __init__(self, parts: Sequence[Defense]) -> None:
        super().__init__()
        if not parts:
            raise ParameterError("a defense chain needs at least one defense")
        self.parts = nn.ModuleList(parts)
        self.name = "+".join(p.name for p in parts)
        self.random = any(p.random for p in parts)
        self.differentiable = all(p.differentiable for p in parts)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for part in self.parts:
            x = part(x)
        return x

    def reseed(self, seed: int) -> None:
        """Reseed every random part from ``seed`` (each part gets its own derived stream)."""
        self.seed = int(seed)
        for i, part in enumerate(self.parts):
            if isinstance(part, Defense) and part.random:
                part.reseed(derive_seed(seed, i))

    def extra_repr(self) -> str:
        return ""


def split_chain(spec: str | Sequence[str]) -> list[str]:
    names = [s.strip() for s in spec.split("+")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    if not names or any(not n for n in names):
        raise ParameterError(f"defense {spec!r} is malformed; give a name or names joined by '+' (e.g. jpeg+median)")
    return names


def create_defense(spec: str | Sequence[str], input_size: tuple[int, int] | None = None, *, seed: int = 0,
                   **params: Any) -> Defense:
    """Build a defense by name, or a chain from ``"a+b"`` or ``["a", "b"]`` (applied in order).

    Args:
        spec: a registered name, names joined by ``+``, or a list of names.
        input_size: the model's (H, W); defenses whose sizes scale with the input use it, and
            every defense then refuses inputs of another size.
        seed: seeds the random parts (a chain derives one stream per part, see ``reseed``).
        params: defense parameters. ``key=v`` goes to every part that has a parameter ``key``;
            ``"name.key"=v`` (pass it as ``**{"jpeg.quality": 50}``) only to the parts named
            ``name``. A key no part takes is an error.

    Raises:
        UnknownNameError: a name that is not registered.
        ParameterError: a parameter no part takes, or a value out of range.
    """
    names = split_chain(spec)
    entries = [DEFENSES.get(n) for n in names]
    kwargs: list[dict[str, Any]] = [{} for _ in entries]
    for key, value in params.items():
        target, _, pname = key.rpartition(".")
        hits = [i for i, e in enumerate(entries) if (not target or e.name == target) and pname in e.defaults]
        if not hits:
            known = "; ".join(f"{e.name}: {', '.join(e.defaults) or 'none'}" for e in entries)
            raise ParameterError(f"defense {'+'.join(names)!r} has no parameter {key!r} (parameters: {known})")
        for i in hits:
            kwargs[i][pname] = value
    chain = len(entries) > 1
    parts = []
    for i, (e, kw) in enumerate(zip(entries, kwargs, strict=True)):
        if e.random:
            kw["seed"] = derive_seed(seed, i) if chain else seed
        parts.append(e.cls(input_size=input_size, **kw))
    if not chain:
        return parts[0]
    out = DefenseChain(parts)
    out.seed = int(seed)
    return out


# ---------------------------------------------------------------------------------------------
# Checks shared by the defenses (each raises ParameterError with one line)
# ---------------------------------------------------------------------------------------------


def check_batch(who: str, x: torch.Tensor, input_size: tuple[int, int] | None) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ParameterError(f"defense {who}: expected images shaped (B, 3, H, W), got {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise ParameterError(f"defense {who}: images must be float tensors in [0,1], got {x.dtype}")
    if input_size is not None and tuple(x.shape[-2:]) != input_size:
        raise ParameterError(
            f"defense {who}: built for {input_size[0]}x{input_size[1]} inputs but got "
            f"{x.shape[-2]}x{x.shape[-1]}; build it with the model's input_size"
        )


def check_int(who: str, name: str, value: Any, lo: int, hi: int) -> int:
    return int(check_range(f"defense {who}", name, value, lo, hi, integer=True, coerce=True))


def check_float(who: str, name: str, value: Any, lo: float, hi: float, *, lo_open: bool = False) -> float:
    return float(check_range(f"defense {who}", name, value, lo, hi, lo_open=lo_open, coerce=True))


def check_choice(who: str, name: str, value: Any, choices: Sequence[str]) -> str:
    return str(params.check_choice(f"defense {who}", name, value, choices))


def check_bool(who: str, name: str, value: Any) -> bool:
    return parse_bool(value, f"defense {who}", name)


def check_size(who: str, name: str, value: Any) -> tuple[int, int]:
    return params.check_size(f"defense {who}", name, value)


def round_half_up(v: float) -> int:
    """Python's round() rounds halves to even (12.5 -> 12); sizes round halves up, as people do."""
    return int(math.floor(v + 0.5))
