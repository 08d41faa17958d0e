"""Image decoding refuses oversized files (decompression bombs) with one line naming the file."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from reidbench.data.base import Sample
from reidbench.data.images import load_images, read_image
from reidbench.errors import DataError


def _png(path: Path, w: int, h: int) -> Path:
    Image.new("RGB", (w, h), (1, 2, 3)).save(path)
    return path


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REIDBENCH_MAX_PIXELS", "1000")
    big = _png(tmp_path / "0001_c1s1_000001_00.png", 40, 30)
    with pytest.raises(DataError, match=r"0001_c1s1_000001_00.png is 40x30 = 1,200 pixels, over the limit of 1,000"):
        read_image(big, (16, 8))
    with pytest.raises(DataError, match="REIDBENCH_MAX_PIXELS"):
        load_images([Sample(big, 1, 0)], (16, 8), use_cache=False)
    assert read_image(_png(tmp_path / "small.png", 20, 40), (16, 8)).shape == (16, 8, 3)


def test_pils_own_bomb_error_becomes_the_same_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL raises past twice this
    big = _png(tmp_path / "bomb.png", 30, 30)
    with pytest.raises(DataError, match="bomb.png is over twice PIL's own limit"):
        read_image(big, (16, 8))


def test_a_bad_limit_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REIDBENCH_MAX_PIXELS", "lots")
    with pytest.raises(DataError, match="REIDBENCH_MAX_PIXELS='lots' is not a positive whole number"):
        read_image(_png(tmp_path / "a.png", 4, 4), (4, 4))
