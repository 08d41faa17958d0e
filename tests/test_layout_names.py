"""Property-based tests over file names in each kind of layout: any name either parses into the
pid and camera it spells, or is refused with one DataError line naming the file, never another
exception and never a silently wrong label."""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reidbench.data.layout_io import BODY_PATTERN, read_body_images, read_camera_folder
from reidbench.errors import DataError

# Names drawn around the conventions: digits, an optional minus, c<digit>, separators, junk.
_PIECES = st.sampled_from(["0002", "-1", "0000", "12", "_c", "_c0", "_c1", "_c9", "s1", "_000451", "_03", "_", "x",
                           "-", "c2", "001", "01", " ", "é", "9999999"])  # fmt: skip
NAMES = st.lists(_PIECES, min_size=1, max_size=6).map("".join).filter(lambda n: n.strip() == n and "/" not in n)
SUFFIX = st.sampled_from([".jpg", ".png", ".JPG", ".txt"])
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _folder_with(name: str) -> Path:
    root = Path(tempfile.mkdtemp())
    (root / name).write_bytes(b"\\x89PNG not decoded here")
    return root


@SETTINGS
@given(stem=NAMES, suffix=SUFFIX)
def test_market_names_parse_or_fail_with_one_line(stem: str, suffix: str) -> None:
    folder = _folder_with(stem + suffix)
    try:
        samples = read_camera_folder(folder, "Market-1501", "0002_c1s1_000451_03.jpg", num_cams=6)
    except DataError as exc:
        msg = str(exc)
        assert "\n" not in msg
        assert (stem + suffix) in msg or "no image" in msg.lower() or "image" in msg.lower()
        return
    finally:
        shutil.rmtree(folder)
    m = re.match(r"^(-?\d+)_c(\d)", stem)
    assert suffix.lower() in (".jpg", ".png") and m is not None, "only conforming image names parse"
    pid, cam = int(m.group(1)), int(m.group(2))
    if pid == -1:
        assert samples == [], "junk is dropped"
    else:
        assert [(s.pid, s.camid) for s in samples] == [(pid, cam - 1)]


@SETTINGS
@given(stem=NAMES, suffix=SUFFIX)
def test_body_image_names_parse_or_fail_with_one_line(stem: str, suffix: str) -> None:
    folder = _folder_with(stem + suffix)
    try:
        samples = read_body_images(folder, "Partial-REID", 1, BODY_PATTERN, "001_001.jpg")
    except DataError as exc:
        assert "\n" not in str(exc)
        return
    finally:
        shutil.rmtree(folder)
    m = BODY_PATTERN.match(stem)
    assert m is not None and suffix.lower() in (".jpg", ".png")
    assert [(s.pid, s.camid) for s in samples] == [(int(m.group(1)), 1)]
