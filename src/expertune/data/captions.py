"""Captions for images, by the strategies SimpleTuner names `textfile` and `filename`.

`textfile` reads the image's same-stem `.txt` file and falls back to the filename when
the file is missing or blank; `filename` turns the stem into words.
"""

from __future__ import annotations

import re
from pathlib import Path

from expertune.errors import ConfigError, DataError

STRATEGIES = ("textfile", "filename")


def caption_from_filename(path: str | Path) -> str:
    """The stem with `_` and `-` as spaces and runs of spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", Path(path).stem)).strip()


def caption_from_textfile(path: str | Path) -> str | None:
    """The stripped text of the image's same-stem `.txt` file, or None if absent or blank."""
    text_path = Path(path).with_suffix(".txt")
    if not text_path.is_file():
        return None
    try:
        text = text_path.read_text(encoding="utf-8-sig").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"cannot read caption file {text_path}: {error}; save it as UTF-8"
        ) from error
    return text or None


def caption_for(path: str | Path, strategy: str = "textfile") -> str:
    """The caption of the image at `path` under `strategy` (see module docstring)."""
    if strategy == "filename":
        return caption_from_filename(path)
    if strategy == "textfile":
        return caption_from_textfile(path) or caption_from_filename(path)
    raise ConfigError(f"unknown caption strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
