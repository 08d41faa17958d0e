"""MSMT17 (V1 and V2): list files naming each image and its pid, with its registration."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from reidbench.data.base import ReIDDataset, Sample
from reidbench.data.layout_io import (
    JUNK_PID,
    MSMT_PATTERN,
    data_root_hint,
    find_dataset_folder,
    malformed_name,
    sorted_by_path,
)
from reidbench.data.registry import DatasetEntry, register_dataset
from reidbench.errors import DataError

# --------------------------------------------------------------------------------------------
# MSMT17

MSMT_LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
MSMT_VERSIONS = {
    "MSMT17_V1": ("train/", "test/", *MSMT_LISTS),
    "MSMT17_V2": ("mask_train_v2/", "mask_test_v2/", *MSMT_LISTS),
}
MSMT_EXAMPLE_LINE = "0000/0000_000_01_0303morning_0015_0.jpg 0"


def read_msmt_list(list_path: Path, image_folder: Path, *, label: str = "MSMT17") -> list[Sample]:
    """Parse one MSMT17 list file: lines ``<path relative to image_folder> <pid>``.

    The pid comes from the list; the camera from the third field of the file name
    (``0000_000_01_...`` is camera 01, camid 0), as torchreid reads it. The first listed image
    must exist (this catches a list paired with the wrong version's folder); the others are not
    checked one by one.
    """
    samples: list[Sample] = []
    text = list_path.read_text()
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not re.fullmatch(r"-?\d+", parts[1]):
            raise DataError(
                f"malformed line {lineno} in {list_path}: {line.strip()!r} "
                f"(expected '<relative path> <pid>', e.g. {MSMT_EXAMPLE_LINE!r})."
            )
        rel, pid = parts[0], int(parts[1])
        path = image_folder / rel
        m = MSMT_PATTERN.match(path.name)
        if m is None:
            raise malformed_name(label, path, MSMT_PATTERN, "0000_000_01_0303morning_0015_0.jpg")
        cam = int(m.group(3))
        if cam < 1:
            raise DataError(
                f"{label} file {path} (line {lineno} of {list_path}) has camera {cam}; "
                f"cameras are numbered from 01 in file names."
            )
        if not samples and not path.is_file():
            raise DataError(
                f"{label}: {list_path.name} lists {rel}, which is missing under {image_folder}."
            )
        if pid == JUNK_PID:
            continue
        samples.append(Sample(path, pid, cam - 1))
    if not samples:
        raise DataError(
            f"{label}: {list_path} lists no images (expected lines like {MSMT_EXAMPLE_LINE!r})."
        )
    return samples


def load_msmt17(root: Path, *, include_val: bool = True) -> ReIDDataset:
    """MSMT17.

    Reference:
        Wei et al. Person Transfer GAN to Bridge Domain Gap for Person Re-Identification.
        CVPR 2018.

    URL: `<http://www.pkuvmc.com/publications/msmt17.html>`_

    Layout: ``<root>/MSMT17_V1/`` (``train/``, ``test/``) or ``<root>/MSMT17_V2/``
    (``mask_train_v2/``, ``mask_test_v2/``; faces blurred), each with ``list_train.txt``,
    ``list_val.txt``, ``list_query.txt`` and ``list_gallery.txt``; torchreid's
    ``<root>/msmt17/MSMT17_V*`` is accepted too. V1 is preferred when both are present.

    The training split is ``list_train.txt`` + ``list_val.txt`` (``include_val``): together they
    are the paper's 32,621 training images, and TransReID reads them that way. torchreid adds
    the val list only with ``combineall=True``.

    Dataset statistics:
        - identities: 4,101; 1,041 (train) + 3,060 (test).
        - images: 126,441; 32,621 (train + val) + 11,659 (query) + 82,161 (gallery).
        - cameras: 15.
    """
    hint = data_root_hint("MSMT17_V1", "MSMT17_V2")
    candidates: dict[str, Sequence[str]] = {}
    for prefix in ("", "msmt17/"):
        for version, required in MSMT_VERSIONS.items():
            candidates[prefix + version] = required
    folder = find_dataset_folder(root, "MSMT17", candidates, hint)
    train_dir, test_dir = (folder / d.rstrip("/") for d in MSMT_VERSIONS[folder.name][:2])
    train = read_msmt_list(folder / "list_train.txt", train_dir)
    if include_val:
        train += read_msmt_list(folder / "list_val.txt", train_dir)
    query = read_msmt_list(folder / "list_query.txt", test_dir)
    gallery = read_msmt_list(folder / "list_gallery.txt", test_dir)
    return ReIDDataset(
        name="msmt17",
        root=folder,
        train=sorted_by_path(train),
        query=sorted_by_path(query),
        gallery=sorted_by_path(gallery),
        extra={
            "version": folder.name,
            "train_lists": "list_train.txt+list_val.txt" if include_val else "list_train.txt",
        },
    )


register_dataset(
    DatasetEntry(
        name="msmt17",
        description="MSMT17: 4,101 ids, 126,441 images, 15 cameras "
        "(32,621 train+val / 11,659 query / 82,161 gallery)",
        folder="MSMT17_V1 or MSMT17_V2",
        load=load_msmt17,
        reference="Wei et al. Person Transfer GAN to Bridge Domain Gap for Person "
        "Re-Identification. CVPR 2018. http://www.pkuvmc.com/publications/msmt17.html",
    )
)
