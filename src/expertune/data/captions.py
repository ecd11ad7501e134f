"""Captions for images, by SimpleTuner's strategies `textfile`, `filename`, `instanceprompt`.

`textfile` reads the image's same-stem `.txt` file and falls back to the filename when
the file is missing or blank (the fallback is reported, not an error); `filename` turns
the stem into words; `instanceprompt` gives every image the dataset's `instance_prompt`.
`prepend_instance_prompt` puts the instance prompt in front of each caption.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from expertune.errors import ConfigError, DataError

STRATEGIES = ("textfile", "filename", "instanceprompt")


def caption_from_filename(path: str | Path) -> str:
    """The stem with `_` and `-` as spaces and runs of spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]", " ", Path(path).stem)).strip()


def caption_from_textfile(path: str | Path) -> str | None:
    """The text of the image's same-stem `.txt` file, whitespace runs (newlines too) as one
    space, or None if the file is absent or blank."""
    text_path = Path(path).with_suffix(".txt")
    if not text_path.is_file():
        return None
    try:
        text = text_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(
            f"cannot read caption file {text_path}: {error}; save it as UTF-8"
        ) from error
    return re.sub(r"\s+", " ", text).strip() or None


@dataclass(frozen=True)
class CaptionRule:
    """A dataset's caption settings (see the module docstring)."""

    strategy: str = "textfile"
    instance_prompt: str | None = None
    prepend_instance_prompt: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown caption strategy {self.strategy!r}; use one of {', '.join(STRATEGIES)}"
            )
        if (self.strategy == "instanceprompt" or self.prepend_instance_prompt) and not (
            self.instance_prompt
        ):
            raise ConfigError(f"caption strategy {self.strategy!r} needs an instance_prompt")

    def caption(self, path: str | Path) -> tuple[str, bool]:
        """(caption, fell_back): fell_back is True when a `textfile` caption was missing."""
        fell_back = False
        if self.strategy == "instanceprompt":
            return str(self.instance_prompt), False
        if self.strategy == "filename":
            text = caption_from_filename(path)
        else:
            text = caption_from_textfile(path)
            fell_back = text is None
            text = text or caption_from_filename(path)
        if self.prepend_instance_prompt:
            text = f"{self.instance_prompt} {text}".strip()
        return text, fell_back


def caption_for(path: str | Path, strategy: str = "textfile") -> str:
    """The caption of the image at `path` under `strategy` (no instance prompt)."""
    return CaptionRule(strategy).caption(path)[0]
