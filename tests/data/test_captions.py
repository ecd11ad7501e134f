"""Captions: same-stem .txt first (textfile), else the filename turned into words."""

from __future__ import annotations

import pytest

from expertune.data.captions import caption_for
from expertune.errors import ConfigError, DataError


def test_textfile_is_read_and_stripped(tmp_path):
    image = tmp_path / "my_cat-photo.png"
    image.write_bytes(b"")
    image.with_suffix(".txt").write_text("\ufeff  a cat on a mat \n\n", encoding="utf-8")
    assert caption_for(image) == "a cat on a mat"
    assert caption_for(image, "filename") == "my cat photo"


def test_missing_or_blank_textfile_falls_back_to_filename(tmp_path):
    image = tmp_path / "a__red--circle.jpg"
    assert caption_for(image, "textfile") == "a red circle"
    image.with_suffix(".txt").write_text("   \n")
    assert caption_for(image, "textfile") == "a red circle"


def test_unreadable_textfile_is_a_data_error(tmp_path):
    image = tmp_path / "x.png"
    image.with_suffix(".txt").write_bytes(b"\xff\xfe\xfa bad")
    with pytest.raises(DataError, match=r"x\.txt"):
        caption_for(image)


def test_unknown_strategy_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="textfile, filename"):
        caption_for(tmp_path / "x.png", "parquet")
