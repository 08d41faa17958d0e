"""Datasets: real re-ID layouts, the synthetic generator, and image loading."""

from reidbench.data.base import ReIDDataset, Sample, relabel
from reidbench.data.registry import DATASETS, DatasetEntry, default_data_root, load_dataset

# Importing the modules registers their datasets.
from reidbench.data import layouts as _layouts  # noqa: E402,F401  isort: skip
from reidbench.data import msmt17 as _msmt17  # noqa: E402,F401  isort: skip
from reidbench.data import synthetic as _synthetic  # noqa: E402,F401  isort: skip

__all__ = [
    "DATASETS",
    "DatasetEntry",
    "ReIDDataset",
    "Sample",
    "default_data_root",
    "load_dataset",
    "relabel",
]
