"""Real re-ID dataset layouts, read with the folder names and file names their users already have.

Each dataset is read from the folder it unpacks to (or the one torchreid and the occluded re-ID
repos expect) under the data root: ``<root>/Market-1501-v15.09.15``, ``<root>/DukeMTMC-reID``,
``<root>/MSMT17_V2``, ... :func:`find_dataset_folder` tries each dataset's candidate folders in
order, the data root itself last.

Rules shared by every layout:

* junk images (pid -1) are dropped; distractors (pid 0) stay where they are (the gallery);
* camera ids are 0-based (Market-1501 ``c1`` -> 0);
* samples are sorted by path and their paths are absolute; the dataset's ``root`` is the dataset
  folder, so the fingerprint does not depend on where the data root lives;
* only image files count (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, ``.tif``, ``.tiff``); other files
  (``Thumbs.db``, ``.txt``) and hidden files are ignored;
* a missing folder or list file, a folder without images, an image whose name breaks the
  convention, or a malformed list line raises :class:`~reidbench.errors.DataError` with one line
  naming the folder, file or line and what was expected.

Occluded-REID, Partial-REID and P-DukeMTMC-reID carry no camera labels. As in PVPM, BPBreID and
EANet, queries (occluded or partial images) get camid 0 and the gallery (whole-body images) camid
1, so the same-camera filter of the evaluation never removes a true match.

This module holds the readers every layout shares; each layout module (:mod:`reidbench.data.layouts`,
:mod:`reidbench.data.msmt17`) holds its loaders and their registration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from reidbench.data.base import ReIDDataset, Sample
from reidbench.data.registry import ENV_DATA_ROOT
from reidbench.errors import DataError

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})

JUNK_PID = -1

MARKET_FOLDERS = ("bounding_box_train/", "query/", "bounding_box_test/")

# torchreid's ``([-\d]+)_c(\d)``, anchored at the start of the name and with the sign limited to
# a leading minus, so that "x_0002_c1.jpg" or "1-2_c1.jpg" are rejected rather than misread.
MARKET_PATTERN = re.compile(r"^(-?\d+)_c(\d)")
# Occluded-REID "001_01.tif", Partial-REID "001_001.jpg": pid, underscore, image index.
BODY_PATTERN = re.compile(r"^(\d+)_\d+")
# P-DukeMTMC-reID: only the leading pid is read (PVPM and BPBreID split the name on "_").
PID_PREFIX_PATTERN = re.compile(r"^(\d+)_")
# MSMT17 "0000_000_01_0303morning_0015_0.jpg": pid, index, 1-based camera, ...
MSMT_PATTERN = re.compile(r"^(\d+)_(\d+)_(\d+)_")


def data_root_hint(*folders: str) -> str:
    """The sentence that ends every layout error: how to point reidbench at the data."""
    held = " or ".join(f"{f}/" for f in folders)
    return f"Pass --data-root or set {ENV_DATA_ROOT} to the folder that holds {held}."


def _describe(required: Sequence[str]) -> str:
    return ", ".join(required)


def _missing(folder: Path, required: Sequence[str]) -> list[str]:
    out = []
    for entry in required:
        path = folder / entry.rstrip("/")
        ok = path.is_dir() if entry.endswith("/") else path.is_file()
        if not ok:
            out.append(entry)
    return out


def _missing_message(
    label: str, folder: Path, entry: str, required: Sequence[str], hint: str
) -> str:
    kind = "folder" if entry.endswith("/") else "file"
    return (
        f"{label} layout not found: missing {kind} {entry.rstrip('/')!r} under {folder} "
        f"(expected {_describe(required)}). {hint}".rstrip()
    )


def find_dataset_folder(
    root: Path, label: str, candidates: Mapping[str, Sequence[str]], hint: str
) -> Path:
    """Return the first candidate folder under ``root`` that holds all its required entries.

    Args:
        root: the data root.
        label: the dataset's name in messages ("Market-1501").
        candidates: folder relative to ``root`` ("." is ``root`` itself), in order of preference,
            mapped to the entries it must hold; an entry ending in "/" is a folder, any other a file.
        hint: the sentence appended to errors (see :func:`data_root_hint`).

    When no candidate is complete, the error names the first missing entry of the closest one
    (most entries present, then the earliest existing named folder), or says that none exists.
    """
    root = Path(root).expanduser().absolute()
    if not root.is_dir():
        raise DataError(f"{label} layout not found: data root {root} does not exist. {hint}")
    best: tuple[int, Path, Sequence[str], list[str]] | None = None
    for rel, required in candidates.items():
        folder = root if rel == "." else root / rel
        if not folder.is_dir():
            continue
        missing = _missing(folder, required)
        if not missing:
            return folder
        present = len(required) - len(missing)
        if present == 0 and rel == ".":
            continue  # the data root always exists; only name it when it holds part of a layout
        if best is None or present > best[0]:
            best = (present, folder, required, missing)
    if best is not None:
        _, folder, required, missing = best
        raise DataError(_missing_message(label, folder, missing[0], required, hint))
    named = [rel + "/" for rel in candidates if rel != "."]
    itself = ""
    if "." in candidates:
        itself = f", and {root} itself does not hold {_describe(candidates['.'])}"
    raise DataError(
        f"{label} layout not found: no {' or '.join(named)} under {root}{itself}. {hint}"
    )


def _require(label: str, folder: Path, required: Sequence[str], hint: str) -> None:
    missing = _missing(folder, required)
    if missing:
        raise DataError(_missing_message(label, folder, missing[0], required, hint))


def list_images(folder: Path, label: str, example: str, *, nested: bool = False) -> list[Path]:
    """Image files in ``folder`` (and, with ``nested``, in its subfolders one level down), sorted.

    An empty result is an error: a layout folder without images is a broken download.
    """
    found: list[Path] = []
    with os.scandir(folder) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if nested:
                found.extend(_list_images_flat(Path(entry.path)))
        elif Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            found.append(Path(entry.path))
    if not found:
        where = f"{folder} or its subfolders" if nested else str(folder)
        raise DataError(f"{label}: no images in {where} (expected files named like {example}).")
    return found


def _list_images_flat(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return sorted(
            Path(e.path)
            for e in it
            if not e.name.startswith(".")
            and e.is_file()
            and Path(e.name).suffix.lower() in IMAGE_SUFFIXES
        )


def malformed_name(label: str, path: Path, pattern: re.Pattern[str], example: str) -> DataError:
    return DataError(
        f"malformed {label} file name {path}: expected the pattern {pattern.pattern} "
        f"(e.g. {example})."
    )


def sorted_by_path(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: s.path.as_posix())


def read_camera_folder(
    folder: Path, label: str, example: str, *, num_cams: int | None = None
) -> list[Sample]:
    """Parse a Market-1501-style folder: pid and 1-based camera from ``PPPP_cC...`` names.

    Junk (pid -1) is dropped. ``num_cams`` bounds the camera digit (1..num_cams); without it
    only c0 is rejected.
    """
    samples: list[Sample] = []
    for path in list_images(folder, label, example):
        m = MARKET_PATTERN.match(path.name)
        if m is None:
            raise malformed_name(label, path, MARKET_PATTERN, example)
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid < JUNK_PID:
            raise malformed_name(label, path, MARKET_PATTERN, example)
        top = num_cams if num_cams is not None else 9
        if not 1 <= cam <= top:
            raise DataError(
                f"{label} file {path} has camera c{cam}; expected c1..c{top} "
                f"(cameras are numbered from 1 in file names)."
            )
        if pid == JUNK_PID:
            continue
        samples.append(Sample(path, pid, cam - 1))
    return sorted_by_path(samples)


def read_market_layout(
    folder: Path,
    name: str,
    *,
    label: str = "Market-1501",
    example: str = "0002_c1s1_000451_03.jpg",
    num_cams: int | None = None,
    hint: str = "",
) -> ReIDDataset:
    """Read ``bounding_box_train/``, ``query/`` and ``bounding_box_test/`` directly under ``folder``.

    This is the Market-1501 layout, shared by DukeMTMC-reID, Occluded-Duke and the synthetic
    presets (which write ``.png``). File names start with ``PPPP_cC`` (pid, 1-based camera).

    Args:
        folder: the exact folder that holds the three split folders.
        name: the registry name stored in the dataset.
        label: the dataset's name in error messages.
        example: a valid file name, shown in error messages.
        num_cams: when given, camera digits must lie in 1..num_cams.
        hint: appended to the missing-folder error.
    """
    folder = Path(folder).expanduser().absolute()
    _require(label, folder, MARKET_FOLDERS, hint)
    train, query, gallery = (
        read_camera_folder(folder / split.rstrip("/"), label, example, num_cams=num_cams)
        for split in MARKET_FOLDERS
    )
    return ReIDDataset(name=name, root=folder, train=train, query=query, gallery=gallery)


def read_body_images(
    folder: Path,
    label: str,
    camid: int,
    pattern: re.Pattern[str],
    example: str,
) -> list[Sample]:
    """Parse an ``*_body_images`` folder: pid from the name, one camid for the whole folder.

    Images may sit directly in ``folder`` or in one subfolder per identity (``001/001_01.tif``).
    """
    samples: list[Sample] = []
    for path in list_images(folder, label, example, nested=True):
        m = pattern.match(path.name)
        if m is None:
            raise malformed_name(label, path, pattern, example)
        samples.append(Sample(path, int(m.group(1)), camid))
    return sorted_by_path(samples)
