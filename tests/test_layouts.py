"""Real dataset layouts: each parser on a tiny fake tree in its users' folder and file names."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from reidbench.data import DATASETS, load_dataset
from reidbench.data.base import ReIDDataset
from reidbench.data.layouts import read_market_layout
from reidbench.data.msmt17 import load_msmt17
from reidbench.errors import DataError

# (path relative to the dataset folder, pid, camid), in the order the parser must return them.
Split = list[tuple[str, int, int]]


def write_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpg": "JPEG", ".png": "PNG", ".tif": "TIFF"}[path.suffix]
    Image.new("RGB", (4, 8), (200, 30, 30)).save(path, format=fmt)


def write_noise(folder: Path) -> None:
    """Files that are not images of the layout and must be ignored."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Thumbs.db").write_bytes(b"\x00\x01")
    (folder / "readme.txt").write_text("not an image")
    (folder / "._0002_c1s1_000451_03.jpg").write_bytes(b"AppleDouble")


def as_split(ds_root: Path, samples: list) -> Split:
    return [(s.path.relative_to(ds_root).as_posix(), s.pid, s.camid) for s in samples]


# --------------------------------------------------------------------------------------------
# Tree builders: each writes a valid tree into `folder` and returns what the parser must read.


def build_market(folder: Path, ext: str = "jpg") -> dict[str, Split]:
    files = {
        "bounding_box_train": [
            "0002_c1s1_000451_03", "0002_c3s1_000551_01", "0007_c2s1_000601_02",
            "-1_c1s1_000401_03",  # junk
        ],
        "query": ["0007_c6s1_000701_00", "0002_c2s1_000301_00"],
        "bounding_box_test": [
            "0000_c1s1_000151_01",  # distractor
            "0002_c4s1_000801_01", "0007_c5s1_000901_01",
            "-1_c2s1_000161_02",  # junk
        ],
    }  # fmt: skip
    for split, names in files.items():
        for name in names:
            write_image(folder / split / f"{name}.{ext}")
        write_noise(folder / split)
    return {
        "train": [
            (f"bounding_box_train/0002_c1s1_000451_03.{ext}", 2, 0),
            (f"bounding_box_train/0002_c3s1_000551_01.{ext}", 2, 2),
            (f"bounding_box_train/0007_c2s1_000601_02.{ext}", 7, 1),
        ],
        "query": [
            (f"query/0002_c2s1_000301_00.{ext}", 2, 1),
            (f"query/0007_c6s1_000701_00.{ext}", 7, 5),
        ],
        "gallery": [
            (f"bounding_box_test/0000_c1s1_000151_01.{ext}", 0, 0),
            (f"bounding_box_test/0002_c4s1_000801_01.{ext}", 2, 3),
            (f"bounding_box_test/0007_c5s1_000901_01.{ext}", 7, 4),
        ],
    }


def build_duke(folder: Path) -> dict[str, Split]:
    files = {
        "bounding_box_train": ["0005_c1_f0000100", "0001_c8_f0050000", "0001_c2_f0046182"],
        "query": ["0001_c5_f0047000", "0005_c3_f0000200"],
        "bounding_box_test": ["0001_c6_f0048000", "0005_c7_f0000300", "0099_c4_f0000400"],
    }
    for split, names in files.items():
        for name in names:
            write_image(folder / split / f"{name}.jpg")
        write_noise(folder / split)
    return {
        "train": [
            ("bounding_box_train/0001_c2_f0046182.jpg", 1, 1),
            ("bounding_box_train/0001_c8_f0050000.jpg", 1, 7),
            ("bounding_box_train/0005_c1_f0000100.jpg", 5, 0),
        ],
        "query": [
            ("query/0001_c5_f0047000.jpg", 1, 4),
            ("query/0005_c3_f0000200.jpg", 5, 2),
        ],
        "gallery": [
            ("bounding_box_test/0001_c6_f0048000.jpg", 1, 5),
            ("bounding_box_test/0005_c7_f0000300.jpg", 5, 6),
            ("bounding_box_test/0099_c4_f0000400.jpg", 99, 3),
        ],
    }


def build_msmt(folder: Path) -> dict[str, Split]:
    train_dir, test_dir = ("train", "test") if folder.name.endswith("V1") else (
        "mask_train_v2", "mask_test_v2")  # fmt: skip
    lists = {
        # Written out of path order on purpose: the parser sorts.
        "list_train.txt": (train_dir, [
            ("0001/0001_000_15_0303noon_0030_0.jpg", 1),
            ("0000/0000_001_05_0303morning_0020_1.jpg", 0),
            ("0000/0000_000_01_0303morning_0015_0.jpg", 0),
        ]),
        "list_val.txt": (train_dir, [("0002/0002_000_03_0303afternoon_0040_0.jpg", 2)]),
        "list_query.txt": (test_dir, [
            ("0001/0001_000_11_0113noon_0010_0.jpg", 1),
            ("0000/0000_000_02_0113morning_0010_0.jpg", 0),
        ]),
        "list_gallery.txt": (test_dir, [
            ("0000/0000_001_07_0113morning_0050_0.jpg", 0),
            ("0001/0001_002_04_0113noon_0060_1.jpg", 1),
            ("0001/0001_003_12_0113noon_0070_0.jpg", 1),
        ]),
    }  # fmt: skip
    for list_name, (image_dir, entries) in lists.items():
        for rel, _ in entries:
            write_image(folder / image_dir / rel)
        text = "".join(f"{rel} {pid}\n" for rel, pid in entries)
        (folder / list_name).write_text(text)
    return {
        "train": [
            (f"{train_dir}/0000/0000_000_01_0303morning_0015_0.jpg", 0, 0),
            (f"{train_dir}/0000/0000_001_05_0303morning_0020_1.jpg", 0, 4),
            (f"{train_dir}/0001/0001_000_15_0303noon_0030_0.jpg", 1, 14),
            (f"{train_dir}/0002/0002_000_03_0303afternoon_0040_0.jpg", 2, 2),
        ],
        "query": [
            (f"{test_dir}/0000/0000_000_02_0113morning_0010_0.jpg", 0, 1),
            (f"{test_dir}/0001/0001_000_11_0113noon_0010_0.jpg", 1, 10),
        ],
        "gallery": [
            (f"{test_dir}/0000/0000_001_07_0113morning_0050_0.jpg", 0, 6),
            (f"{test_dir}/0001/0001_002_04_0113noon_0060_1.jpg", 1, 3),
            (f"{test_dir}/0001/0001_003_12_0113noon_0070_0.jpg", 1, 11),
        ],
    }


def build_occluded_reid(folder: Path) -> dict[str, Split]:
    for rel in [
        "occluded_body_images/002/002_01.tif",
        "occluded_body_images/001/001_02.tif",
        "occluded_body_images/001/001_01.tif",
        "whole_body_images/001/001_01.tif",
        "whole_body_images/002/002_02.tif",
        "whole_body_images/002/002_01.tif",
    ]:
        write_image(folder / rel)
    write_noise(folder / "whole_body_images" / "001")
    return {
        "train": [],
        "query": [
            ("occluded_body_images/001/001_01.tif", 1, 0),
            ("occluded_body_images/001/001_02.tif", 1, 0),
            ("occluded_body_images/002/002_01.tif", 2, 0),
        ],
        "gallery": [
            ("whole_body_images/001/001_01.tif", 1, 1),
            ("whole_body_images/002/002_01.tif", 2, 1),
            ("whole_body_images/002/002_02.tif", 2, 1),
        ],
    }


def build_partial_reid(folder: Path) -> dict[str, Split]:
    for rel in [
        "partial_body_images/002_001.jpg",
        "partial_body_images/001_002.jpg",
        "partial_body_images/001_001.jpg",
        "whole_body_images/001_001.jpg",
        "whole_body_images/002_001.jpg",
        # The uncropped queries ship too; the protocol queries with the partial crops.
        "occluded_body_images/001_001.jpg",
        "occluded_body_images/003_001.jpg",
    ]:
        write_image(folder / rel)
    write_noise(folder / "partial_body_images")
    return {
        "train": [],
        "query": [
            ("partial_body_images/001_001.jpg", 1, 0),
            ("partial_body_images/001_002.jpg", 1, 0),
            ("partial_body_images/002_001.jpg", 2, 0),
        ],
        "gallery": [
            ("whole_body_images/001_001.jpg", 1, 1),
            ("whole_body_images/002_001.jpg", 2, 1),
        ],
    }


def build_p_duke(folder: Path) -> dict[str, Split]:
    for rel in [
        "train/whole_body_images/0008/0008_c3_f0010000.jpg",
        "train/whole_body_images/0005/0005_c1_f0040000.jpg",
        "train/occluded_body_images/0005/0005_c2_f0046985.jpg",
        "test/occluded_body_images/0100/0100_c2_f0001000.jpg",
        "test/whole_body_images/0101/0101_c6_f0002000.jpg",
        "test/whole_body_images/0100/0100_c5_f0003000.jpg",
    ]:
        write_image(folder / rel)
    write_noise(folder / "test" / "whole_body_images")
    return {
        "train": [
            ("train/occluded_body_images/0005/0005_c2_f0046985.jpg", 5, 0),
            ("train/whole_body_images/0005/0005_c1_f0040000.jpg", 5, 1),
            ("train/whole_body_images/0008/0008_c3_f0010000.jpg", 8, 1),
        ],
        "query": [("test/occluded_body_images/0100/0100_c2_f0001000.jpg", 100, 0)],
        "gallery": [
            ("test/whole_body_images/0100/0100_c5_f0003000.jpg", 100, 1),
            ("test/whole_body_images/0101/0101_c6_f0002000.jpg", 101, 1),
        ],
    }


@dataclass(frozen=True)
class Layout:
    name: str
    folder: str  # the default folder under the data root
    build: Callable[[Path], dict[str, Split]]


LAYOUTS = [
    Layout("market1501", "Market-1501-v15.09.15", build_market),
    Layout("dukemtmcreid", "DukeMTMC-reID", build_duke),
    Layout("occluded_duke", "Occluded_Duke", build_duke),
    Layout("msmt17", "MSMT17_V1", build_msmt),
    Layout("occluded_reid", "Occluded_REID", build_occluded_reid),
    Layout("partial_reid", "Partial-REID_Dataset", build_partial_reid),
    Layout("p_dukemtmc_reid", "P-DukeMTMC-reID", build_p_duke),
]
BY_NAME = {layout.name: layout for layout in LAYOUTS}


def check(ds: ReIDDataset, folder: Path, expected: dict[str, Split]) -> None:
    assert ds.root == folder
    assert as_split(folder, ds.train) == expected["train"]
    assert as_split(folder, ds.query) == expected["query"]
    assert as_split(folder, ds.gallery) == expected["gallery"]


# --------------------------------------------------------------------------------------------
# Reading valid trees


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_layout_reads_pids_camids_and_order(tmp_path: Path, layout: Layout) -> None:
    folder = tmp_path / layout.folder
    expected = layout.build(folder)
    ds = load_dataset(layout.name, tmp_path)
    assert ds.name == layout.name
    check(ds, folder, expected)
    for samples in (ds.train, ds.query, ds.gallery):
        assert all(s.path.is_absolute() and s.path.is_file() for s in samples)
        assert [s.path for s in samples] == sorted(s.path for s in samples)


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_market_drops_junk_keeps_distractors(tmp_path: Path, ext: str) -> None:
    build_market(tmp_path / "Market-1501-v15.09.15", ext)
    ds = load_dataset("market1501", tmp_path)
    assert -1 not in {s.pid for s in ds.train + ds.query + ds.gallery}
    assert [s.pid for s in ds.gallery].count(0) == 1
    assert (len(ds.train), len(ds.query), len(ds.gallery)) == (3, 2, 3)
    assert ds.num_train_pids == 2
    assert {s.camid for s in ds.query} == {1, 5}  # c2 and c6


@pytest.mark.parametrize(
    ("name", "rel"),
    [
        ("market1501", "Market-1501-v15.09.15"),
        ("market1501", "market1501/Market-1501-v15.09.15"),
        ("market1501", "market1501"),
        ("market1501", "."),
        ("dukemtmcreid", "dukemtmc-reid/DukeMTMC-reID"),
        ("occluded_duke", "."),
        ("msmt17", "MSMT17_V2"),
        ("msmt17", "msmt17/MSMT17_V1"),
        ("occluded_reid", "ICME2018_Occluded-Person-Reidentification_datasets/Occluded_REID"),
        ("partial_reid", "Partial_REID"),
        ("p_dukemtmc_reid", "P-DukeMTMC-reid"),
    ],
)
def test_alternative_folders(tmp_path: Path, name: str, rel: str) -> None:
    folder = tmp_path / rel
    expected = BY_NAME[name].build(folder)
    check(load_dataset(name, tmp_path), folder.absolute(), expected)


def test_read_market_layout_on_an_exact_folder(tmp_path: Path) -> None:
    """The synthetic presets read their own folder: .png, any 1-based camera up to c9."""
    folder = tmp_path / "synthetic-mini-v1-seed0"
    for rel in [
        "bounding_box_train/0003_c8s1_000001_00.png",
        "query/0003_c1s1_000002_00.png",
        "bounding_box_test/0003_c7s1_000003_00.png",
        "bounding_box_test/-1_c2s1_000004_00.png",
    ]:
        write_image(folder / rel)
    ds = read_market_layout(folder, name="synthetic-mini")
    assert ds.name == "synthetic-mini"
    assert ds.root == folder
    assert [(s.pid, s.camid) for s in ds.train + ds.query + ds.gallery] == [(3, 7), (3, 0), (3, 6)]


def test_msmt17_train_is_train_plus_val(tmp_path: Path) -> None:
    build_msmt(tmp_path / "MSMT17_V2")
    both = load_msmt17(tmp_path)
    only_train = load_msmt17(tmp_path, include_val=False)
    assert [s.pid for s in both.train] == [0, 0, 1, 2]
    assert [s.pid for s in only_train.train] == [0, 0, 1]
    assert both.extra["version"] == "MSMT17_V2"
    assert both.num_train_cams == 4


def test_fingerprint_does_not_depend_on_the_data_root(tmp_path: Path) -> None:
    build_market(tmp_path / "a" / "Market-1501-v15.09.15")
    build_market(tmp_path / "b" / "market1501")
    a = load_dataset("market1501", tmp_path / "a")
    b = load_dataset("market1501", tmp_path / "b")
    assert a.fingerprint == b.fingerprint
    (tmp_path / "b" / "market1501" / "query" / "0007_c6s1_000701_00.jpg").unlink()
    assert load_dataset("market1501", tmp_path / "b").fingerprint != a.fingerprint


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("name", "remove", "message"),
    [
        ("market1501", "query", "missing folder 'query' under {folder} (expected bounding_box_train/"),
        ("dukemtmcreid", "bounding_box_test", "missing folder 'bounding_box_test' under {folder}"),
        ("occluded_duke", "bounding_box_train", "missing folder 'bounding_box_train' under {folder}"),
        ("msmt17", "test", "missing folder 'test' under {folder}"),
        ("msmt17", "list_val.txt", "missing file 'list_val.txt' under {folder}"),
        ("occluded_reid", "whole_body_images", "missing folder 'whole_body_images' under {folder}"),
        ("partial_reid", "partial_body_images", "missing folder 'partial_body_images' under {folder}"),
        ("p_dukemtmc_reid", "test/occluded_body_images",
         "missing folder 'test/occluded_body_images' under {folder}"),
    ],
)  # fmt: skip
def test_partial_tree_names_the_missing_entry(
    tmp_path: Path, name: str, remove: str, message: str
) -> None:
    layout = BY_NAME[name]
    folder = tmp_path / layout.folder
    layout.build(folder)
    target = folder / remove
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink()
    with pytest.raises(DataError) as err:
        load_dataset(name, tmp_path)
    text = str(err.value)
    assert message.format(folder=folder) in text
    assert "REIDBENCH_DATA" in text
    assert "\n" not in text


def test_market_partial_tree_message_in_full(tmp_path: Path) -> None:
    folder = tmp_path / "Market-1501-v15.09.15"
    build_market(folder)
    shutil.rmtree(folder / "query")
    with pytest.raises(DataError) as err:
        load_dataset("market1501", tmp_path)
    assert str(err.value) == (
        f"Market-1501 layout not found: missing folder 'query' under {folder} (expected "
        "bounding_box_train/, query/, bounding_box_test/). Pass --data-root or set "
        "REIDBENCH_DATA to the folder that holds Market-1501-v15.09.15/."
    )


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_no_dataset_folder(tmp_path: Path, layout: Layout) -> None:
    (tmp_path / "something_else").mkdir()
    with pytest.raises(DataError) as err:
        load_dataset(layout.name, tmp_path)
    text = str(err.value)
    assert "layout not found: no " in text
    assert f"{layout.folder}/" in text
    assert f"under {tmp_path}" in text


def test_missing_data_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data root .*nowhere does not exist"):
        load_dataset("market1501", tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("name", "bad", "pattern"),
    [
        ("market1501", "query/person_0002.jpg", r"^(-?\d+)_c(\d)"),
        ("market1501", "bounding_box_train/x0002_c1s1_000451_03.png", r"^(-?\d+)_c(\d)"),
        ("dukemtmcreid", "bounding_box_test/0001-c2-f0046182.jpg", r"^(-?\d+)_c(\d)"),
        ("occluded_duke", "query/c2_0001.jpg", r"^(-?\d+)_c(\d)"),
        ("occluded_reid", "whole_body_images/001/001a.tif", r"^(\d+)_\d+"),
        ("partial_reid", "partial_body_images/partial_01.jpg", r"^(\d+)_\d+"),
        ("p_dukemtmc_reid", "train/whole_body_images/0005/img.jpg", r"^(\d+)_"),
    ],
)
def test_malformed_file_name(tmp_path: Path, name: str, bad: str, pattern: str) -> None:
    layout = BY_NAME[name]
    folder = tmp_path / layout.folder
    layout.build(folder)
    write_image(folder / bad)
    with pytest.raises(DataError) as err:
        load_dataset(name, tmp_path)
    text = str(err.value)
    assert str(folder / bad) in text
    assert pattern in text
    assert "\n" not in text


def test_msmt17_malformed_file_name_in_a_list(tmp_path: Path) -> None:
    folder = tmp_path / "MSMT17_V1"
    build_msmt(folder)
    with (folder / "list_query.txt").open("a") as f:
        f.write("0002/0002-000-03.jpg 2\n")
    with pytest.raises(DataError, match=r"0002-000-03\.jpg: expected the pattern"):
        load_dataset("msmt17", tmp_path)


def test_msmt17_malformed_line(tmp_path: Path) -> None:
    folder = tmp_path / "MSMT17_V1"
    build_msmt(folder)
    with (folder / "list_gallery.txt").open("a") as f:
        f.write("0001/0001_004_12_0113noon_0080_0.jpg\n")  # no pid
    with pytest.raises(DataError) as err:
        load_dataset("msmt17", tmp_path)
    assert f"malformed line 4 in {folder / 'list_gallery.txt'}" in str(err.value)


def test_msmt17_list_of_the_other_version(tmp_path: Path) -> None:
    folder = tmp_path / "MSMT17_V1"
    build_msmt(folder)
    (folder / "list_train.txt").write_text("0042/0042_000_01_0303morning_0015_0.jpg 42\n")
    with pytest.raises(DataError, match="list_train.txt lists 0042/.* which is missing under"):
        load_dataset("msmt17", tmp_path)


@pytest.mark.parametrize(
    ("name", "emptied"),
    [
        ("market1501", "query"),
        ("dukemtmcreid", "bounding_box_train"),
        ("occluded_reid", "whole_body_images"),
        ("partial_reid", "whole_body_images"),
        ("p_dukemtmc_reid", "train/whole_body_images"),
    ],
)
def test_folder_without_images(tmp_path: Path, name: str, emptied: str) -> None:
    layout = BY_NAME[name]
    folder = tmp_path / layout.folder
    layout.build(folder)
    shutil.rmtree(folder / emptied)
    write_noise(folder / emptied)  # only Thumbs.db and friends are left
    with pytest.raises(DataError) as err:
        load_dataset(name, tmp_path)
    assert f"no images in {folder / emptied}" in str(err.value)


def test_msmt17_empty_list(tmp_path: Path) -> None:
    folder = tmp_path / "MSMT17_V1"
    build_msmt(folder)
    (folder / "list_query.txt").write_text("\n")
    with pytest.raises(DataError, match="list_query.txt lists no images"):
        load_dataset("msmt17", tmp_path)


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("market1501", "query/0002_c7s1_000301_00.jpg", "camera c7; expected c1..c6"),
        ("market1501", "query/0002_c0s1_000301_00.jpg", "camera c0; expected c1..c6"),
        ("dukemtmcreid", "query/0001_c9_f0047000.jpg", "camera c9; expected c1..c8"),
    ],
)
def test_camera_out_of_range(tmp_path: Path, name: str, bad: str, message: str) -> None:
    layout = BY_NAME[name]
    folder = tmp_path / layout.folder
    layout.build(folder)
    write_image(folder / bad)
    with pytest.raises(DataError, match=message):
        load_dataset(name, tmp_path)


# --------------------------------------------------------------------------------------------
# Registry


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_registered_with_description_and_reference(layout: Layout) -> None:
    entry = DATASETS.get(layout.name)
    assert entry.name == layout.name
    assert not entry.synthetic
    assert layout.folder in entry.folder
    assert any(ch.isdigit() for ch in entry.description)
    assert "20" in entry.reference  # a year
    assert entry.load.__doc__ is not None and "Dataset statistics" in entry.load.__doc__
