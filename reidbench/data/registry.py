"""The dataset registry: real layouts and synthetic presets under one name space.

Each entry knows how to turn a data root into a :class:`ReIDDataset`. Real layouts read the
folder their users already have under the root (``<root>/Market-1501-v15.09.15`` and so on);
synthetic presets generate their files under the root on first use.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from reidbench.data.base import ReIDDataset
from reidbench.registry import Registry

ENV_DATA_ROOT = "REIDBENCH_DATA"


@dataclass(frozen=True)
class DatasetEntry:
    """How to obtain one dataset from a data root.

    ``load(root)`` returns the split; it may generate files (synthetic presets) but never touches
    the network. ``folder`` is the folder expected under the root, shown in ``reidbench list``.
    """

    name: str
    description: str
    folder: str
    load: Callable[[Path], ReIDDataset]
    synthetic: bool = False
    reference: str = ""


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    DATASETS.add(entry.name, entry)
    return entry


def default_data_root() -> Path:
    """``$REIDBENCH_DATA`` if set, else ``~/.cache/reidbench/data``."""
    env = os.environ.get(ENV_DATA_ROOT)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reidbench" / "data"


def load_dataset(name: str, data_root: str | Path | None = None) -> ReIDDataset:
    """Read (or, for synthetic presets, generate on first use) the dataset ``name``."""
    entry = DATASETS.get(name)
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    return entry.load(root)
