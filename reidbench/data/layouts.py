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
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from reidbench.data.base import ReIDDataset, Sample
from reidbench.data.registry import ENV_DATA_ROOT, DatasetEntry, register_dataset
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


def _malformed(label: str, path: Path, pattern: re.Pattern[str], example: str) -> DataError:
    return DataError(
        f"malformed {label} file name {path}: expected the pattern {pattern.pattern} "
        f"(e.g. {example})."
    )


def _by_path(samples: list[Sample]) -> list[Sample]:
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
            raise _malformed(label, path, MARKET_PATTERN, example)
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid < JUNK_PID:
            raise _malformed(label, path, MARKET_PATTERN, example)
        top = num_cams if num_cams is not None else 9
        if not 1 <= cam <= top:
            raise DataError(
                f"{label} file {path} has camera c{cam}; expected c1..c{top} "
                f"(cameras are numbered from 1 in file names)."
            )
        if pid == JUNK_PID:
            continue
        samples.append(Sample(path, pid, cam - 1))
    return _by_path(samples)


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
            raise _malformed(label, path, pattern, example)
        samples.append(Sample(path, int(m.group(1)), camid))
    return _by_path(samples)


# --------------------------------------------------------------------------------------------
# Market-1501, DukeMTMC-reID, Occluded-Duke


MARKET_CANDIDATES = (
    "Market-1501-v15.09.15",
    "market1501/Market-1501-v15.09.15",
    "market1501",
    ".",
)


def load_market1501(root: Path) -> ReIDDataset:
    """Market-1501.

    Reference:
        Zheng et al. Scalable Person Re-identification: A Benchmark. ICCV 2015.

    URL: `<http://www.liangzheng.org/Project/project_reid.html>`_

    Layout: ``<root>/Market-1501-v15.09.15/`` (also ``<root>/market1501/Market-1501-v15.09.15/``,
    ``<root>/market1501/`` or ``<root>`` itself) with ``bounding_box_train/``, ``query/`` and
    ``bounding_box_test/``; names ``PPPP_cCsS_FFFFFF_II.jpg``, read with ``^(-?\\d+)_c(\\d)``.

    Dataset statistics:
        - identities: 1,501 (751 train + 750 test), plus distractors (pid 0).
        - images: 32,668 boxes; 12,936 (train) + 3,368 (query) + 19,732 (gallery, of which
          15,913 remain once the junk boxes, pid -1, are dropped).
        - cameras: 6.
    """
    hint = data_root_hint("Market-1501-v15.09.15")
    folder = find_dataset_folder(
        root, "Market-1501", dict.fromkeys(MARKET_CANDIDATES, MARKET_FOLDERS), hint
    )
    return read_market_layout(folder, "market1501", num_cams=6, hint=hint)


DUKE_EXAMPLE = "0001_c2_f0046182.jpg"


def load_dukemtmcreid(root: Path) -> ReIDDataset:
    """DukeMTMC-reID.

    Reference:
        - Ristani et al. Performance Measures and a Data Set for Multi-Target, Multi-Camera
          Tracking. ECCV workshops 2016.
        - Zheng et al. Unlabeled Samples Generated by GAN Improve the Person Re-identification
          Baseline in vitro. ICCV 2017.

    URL: `<https://github.com/layumi/DukeMTMC-reID_evaluation>`_

    Layout: ``<root>/DukeMTMC-reID/`` (also torchreid's ``<root>/dukemtmc-reid/DukeMTMC-reID/``
    or ``<root>`` itself) with ``bounding_box_train/``, ``query/`` and ``bounding_box_test/``;
    names ``PPPP_cC_fFFFFFFF.jpg``, read with ``^(-?\\d+)_c(\\d)``.

    Dataset statistics:
        - identities: 1,404 (702 train + 702 test) + 408 distractor identities (gallery only).
        - images: 36,411; 16,522 (train) + 2,228 (query) + 17,661 (gallery).
        - cameras: 8.
    """
    hint = data_root_hint("DukeMTMC-reID")
    candidates = ("DukeMTMC-reID", "dukemtmc-reid/DukeMTMC-reID", ".")
    folder = find_dataset_folder(
        root, "DukeMTMC-reID", dict.fromkeys(candidates, MARKET_FOLDERS), hint
    )
    return read_market_layout(
        folder, "dukemtmcreid", label="DukeMTMC-reID", example=DUKE_EXAMPLE, num_cams=8, hint=hint
    )


def load_occluded_duke(root: Path) -> ReIDDataset:
    """Occluded-DukeMTMC (Occluded-Duke).

    Reference:
        Miao et al. Pose-Guided Feature Alignment for Occluded Person Re-Identification.
        ICCV 2019.

    URL: `<https://github.com/lightas/Occluded-DukeMTMC-Dataset>`_ (a re-split of
    DukeMTMC-reID, written by its ``convert_duke_to_occduke.py``: every query is occluded).

    Layout: ``<root>/Occluded_Duke/`` (or ``<root>`` itself) with ``bounding_box_train/``,
    ``query/`` and ``bounding_box_test/``; DukeMTMC-reID names, read with ``^(-?\\d+)_c(\\d)``.

    Dataset statistics:
        - identities: 702 (train), 519 (query), 1,110 (gallery).
        - images: 15,618 (train) + 2,210 (query) + 17,661 (gallery).
        - cameras: 8.
    """
    hint = data_root_hint("Occluded_Duke")
    candidates = ("Occluded_Duke", ".")
    folder = find_dataset_folder(
        root, "Occluded-Duke", dict.fromkeys(candidates, MARKET_FOLDERS), hint
    )
    return read_market_layout(
        folder, "occluded_duke", label="Occluded-Duke", example=DUKE_EXAMPLE, num_cams=8, hint=hint
    )


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
            raise _malformed(label, path, MSMT_PATTERN, "0000_000_01_0303morning_0015_0.jpg")
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
        train=_by_path(train),
        query=_by_path(query),
        gallery=_by_path(gallery),
        extra={
            "version": folder.name,
            "train_lists": "list_train.txt+list_val.txt" if include_val else "list_train.txt",
        },
    )


# --------------------------------------------------------------------------------------------
# Occluded-REID, Partial-REID, P-DukeMTMC-reID: folders by visibility, no camera labels

QUERY_CAMID = 0
GALLERY_CAMID = 1


def _load_body_folders(root: Path, name: str, display: str, candidates: tuple[str, ...], query_dir: str,
                       example: str) -> ReIDDataset:  # fmt: skip
    """A dataset with no training split, in two folders: ``query_dir/`` (queries, camid 0) and ``whole_body_images/``
    (gallery, camid 1), looked for under each of ``candidates``; the hint names the first."""
    hint = data_root_hint(candidates[0])
    required = (f"{query_dir}/", "whole_body_images/")
    folder = find_dataset_folder(root, display, dict.fromkeys(candidates, required), hint)
    query = read_body_images(folder / query_dir, display, QUERY_CAMID, BODY_PATTERN, example)
    gallery = read_body_images(folder / "whole_body_images", display, GALLERY_CAMID, BODY_PATTERN, example)
    return ReIDDataset(name=name, root=folder, train=[], query=query, gallery=gallery)


def load_occluded_reid(root: Path) -> ReIDDataset:
    """Occluded-REID.

    Reference:
        Zhuo et al. Occluded Person Re-identification. ICME 2018.

    URL: `<https://arxiv.org/abs/1804.02792>`_

    Layout: ``<root>/Occluded_REID/`` (also PVPM's
    ``<root>/ICME2018_Occluded-Person-Reidentification_datasets/Occluded_REID/`` or ``<root>``
    itself) with ``occluded_body_images/`` (queries, camid 0) and ``whole_body_images/``
    (gallery, camid 1), one subfolder per identity: ``occluded_body_images/001/001_01.tif``.
    Names are read with ``^(\\d+)_\\d+``. There is no training split (train is empty); models are
    trained on Market-1501.

    Dataset statistics:
        - identities: 200, each with 5 occluded and 5 whole-body images.
        - images: 2,000; 1,000 (query) + 1,000 (gallery).
        - cameras: not labelled (mobile cameras).
    """
    candidates = (
        "Occluded_REID",
        "ICME2018_Occluded-Person-Reidentification_datasets/Occluded_REID",
        ".",
    )
    return _load_body_folders(root, "occluded_reid", "Occluded-REID", candidates, "occluded_body_images", "001_01.tif")


def load_partial_reid(root: Path) -> ReIDDataset:
    """Partial-REID.

    Reference:
        Zheng et al. Partial Person Re-identification. ICCV 2015.

    URL: `<https://openaccess.thecvf.com/content_iccv_2015/html/Zheng_Partial_Person_Re-Identification_ICCV_2015_paper.html>`_

    Layout: ``<root>/Partial-REID_Dataset/`` (as distributed; also ``<root>/Partial_REID/`` as in
    fast-reid and BPBreID, or ``<root>`` itself) with ``partial_body_images/`` (queries, camid 0)
    and ``whole_body_images/`` (gallery, camid 1); flat folders of ``001_001.jpg`` names, read
    with ``^(\\d+)_\\d+``. The distribution also has ``occluded_body_images/`` (the uncropped
    queries); like DSR, fast-reid and BPBreID we query with the cropped partial images. There is
    no training split (train is empty).

    Dataset statistics:
        - identities: 60, each with 5 partial and 5 whole-body images.
        - images: 600; 300 (query) + 300 (gallery).
        - cameras: not labelled.
    """
    candidates = ("Partial-REID_Dataset", "Partial_REID", ".")
    return _load_body_folders(root, "partial_reid", "Partial-REID", candidates, "partial_body_images", "001_001.jpg")


P_DUKE_FOLDERS = (
    "train/occluded_body_images/",
    "train/whole_body_images/",
    "test/occluded_body_images/",
    "test/whole_body_images/",
)


def load_p_dukemtmc_reid(root: Path) -> ReIDDataset:
    """P-DukeMTMC-reID.

    Reference:
        Zhuo et al. Occluded Person Re-identification. ICME 2018 (built from DukeMTMC-reID:
        Zheng et al., ICCV 2017).

    URL: `<https://arxiv.org/abs/1804.02792>`_

    Layout: ``<root>/P-DukeMTMC-reID/`` (also ``P-DukeMTMC-reid``, PVPM's
    ``ICME2018_Occluded-Person-Reidentification_datasets/P-DukeMTMC-reid``, or ``<root>``
    itself) with ``train/`` and ``test/``, each holding ``occluded_body_images/`` and
    ``whole_body_images/`` with one subfolder per identity. Queries are
    ``test/occluded_body_images`` (camid 0), the gallery ``test/whole_body_images`` (camid 1);
    the training split holds both train folders, occluded images with camid 0 and whole-body
    images with camid 1 (as PVPM and BPBreID do). Only the leading pid of a name is read
    (``^(\\d+)_``).

    Dataset statistics:
        - identities: 665 (train) + 634 (test).
        - images: 12,927 (train) + 2,163 (query) + 9,053 (gallery).
        - cameras: 8 in the source videos; not used (folder camids 0/1 instead).
    """
    hint = data_root_hint("P-DukeMTMC-reID")
    candidates = (
        "P-DukeMTMC-reID",
        "P-DukeMTMC-reid",
        "ICME2018_Occluded-Person-Reidentification_datasets/P-DukeMTMC-reid",
        ".",
    )
    label = "P-DukeMTMC-reID"
    folder = find_dataset_folder(root, label, dict.fromkeys(candidates, P_DUKE_FOLDERS), hint)
    example = "0005_c2_f0046985.jpg"

    def read(split: str, camid: int) -> list[Sample]:
        return read_body_images(folder / split, label, camid, PID_PREFIX_PATTERN, example)

    train = read("train/occluded_body_images", QUERY_CAMID) + read(
        "train/whole_body_images", GALLERY_CAMID
    )
    return ReIDDataset(
        name="p_dukemtmc_reid",
        root=folder,
        train=_by_path(train),
        query=read("test/occluded_body_images", QUERY_CAMID),
        gallery=read("test/whole_body_images", GALLERY_CAMID),
    )


# --------------------------------------------------------------------------------------------
# Registration

register_dataset(
    DatasetEntry(
        name="market1501",
        description="Market-1501: 1,501 ids, 32,668 images, 6 cameras "
        "(12,936 train / 3,368 query / 19,732 gallery incl. junk and distractors)",
        folder="Market-1501-v15.09.15",
        load=load_market1501,
        reference="Zheng et al. Scalable Person Re-identification: A Benchmark. ICCV 2015. "
        "http://www.liangzheng.org/Project/project_reid.html",
    )
)
register_dataset(
    DatasetEntry(
        name="dukemtmcreid",
        description="DukeMTMC-reID: 1,404 ids + 408 distractor ids, 36,411 images, 8 cameras "
        "(16,522 train / 2,228 query / 17,661 gallery)",
        folder="DukeMTMC-reID",
        load=load_dukemtmcreid,
        reference="Ristani et al. ECCVW 2016; Zheng et al. Unlabeled Samples Generated by GAN "
        "Improve the Person Re-identification Baseline in vitro. ICCV 2017. "
        "https://github.com/layumi/DukeMTMC-reID_evaluation",
    )
)
register_dataset(
    DatasetEntry(
        name="occluded_duke",
        description="Occluded-Duke: DukeMTMC-reID re-split so every query is occluded; "
        "15,618 train (702 ids) / 2,210 query (519 ids) / 17,661 gallery (1,110 ids), 8 cameras",
        folder="Occluded_Duke",
        load=load_occluded_duke,
        reference="Miao et al. Pose-Guided Feature Alignment for Occluded Person "
        "Re-Identification. ICCV 2019. https://github.com/lightas/Occluded-DukeMTMC-Dataset",
    )
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
register_dataset(
    DatasetEntry(
        name="occluded_reid",
        description="Occluded-REID: 200 ids, 2,000 images (5 occluded queries + 5 whole-body "
        "gallery images per id), no train split",
        folder="Occluded_REID",
        load=load_occluded_reid,
        reference="Zhuo et al. Occluded Person Re-identification. ICME 2018. "
        "https://arxiv.org/abs/1804.02792",
    )
)
register_dataset(
    DatasetEntry(
        name="partial_reid",
        description="Partial-REID: 60 ids, 600 images (5 partial queries + 5 whole-body gallery "
        "images per id), no train split",
        folder="Partial-REID_Dataset",
        load=load_partial_reid,
        reference="Zheng et al. Partial Person Re-identification. ICCV 2015. "
        "https://openaccess.thecvf.com/content_iccv_2015/html/"
        "Zheng_Partial_Person_Re-Identification_ICCV_2015_paper.html",
    )
)
register_dataset(
    DatasetEntry(
        name="p_dukemtmc_reid",
        description="P-DukeMTMC-reID: occluded/whole-body DukeMTMC-reID images; 12,927 train "
        "(665 ids) / 2,163 occluded query / 9,053 whole-body gallery (634 ids)",
        folder="P-DukeMTMC-reID",
        load=load_p_dukemtmc_reid,
        reference="Zhuo et al. Occluded Person Re-identification. ICME 2018. "
        "https://arxiv.org/abs/1804.02792",
    )
)
