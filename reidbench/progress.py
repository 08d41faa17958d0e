"""Progress bars: every bar in reidbench comes from :func:`bar`, so one switch silences them all.

``with quiet(): ...`` turns every bar off inside the block (``--quiet``); it is a context
variable, so it holds for the code that runs inside, whatever module creates the bar.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("reidbench_progress", default=True)


def enabled() -> bool:
    return _enabled.get()


def bar(*args: Any, **kwargs: Any) -> Any:
    """A ``tqdm.auto.tqdm`` that is disabled when asked or inside :func:`quiet`."""
    from tqdm.auto import tqdm

    kwargs["disable"] = bool(kwargs.get("disable", False)) or not _enabled.get()
    return tqdm(*args, **kwargs)


@contextmanager
def quiet(on: bool = True) -> Iterator[None]:
    token = _enabled.set(not on and _enabled.get())
    try:
        yield
    finally:
        _enabled.reset(token)
