r"""One small registry class, shared by models, attacks, defenses and datasets.

Each kind wraps it in its own registration call, which builds a typed entry and ``add``\ s it:
``register_attack`` and ``register_defense`` (class decorators), ``register_model``,
``register_dataset`` and ``register_recipe``. Adding a component means one module plus that call. Names are unique;
registering a name twice is an error. ``names(pattern)`` lists with an fnmatch filter, and an
unknown name raises :class:`UnknownNameError` with the closest names.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterator
from typing import Generic, TypeVar

from reidbench.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry mapping for one kind of component (``kind`` is used in messages)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = entry

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}.{hint} See `reidbench list {self.kind}s` "
                f"for the registered names."
            ) from None

    def names(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
