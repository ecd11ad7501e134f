"""Scan a local folder of images into captioned samples, before any training starts.

Each file is read once here: its bytes are hashed (the content digest that cache keys
use) and its header gives the size after EXIF rotation, without decoding pixels, so a
warm start over a large dataset costs a read and a hash per image. Empty files, files
that are not images and unreadable caption files are skipped here with their reason; a
file whose header is fine but whose data is truncated or corrupt fails when it is decoded
for encoding and is skipped then (see encode.py). A cached image is never decoded again:
its digest proves the bytes are the ones that were decoded successfully before.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from expertune.data.captions import CaptionRule
from expertune.data.images import read_size
from expertune.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class Sample:
    """One image: its file, caption, size (height, width) after EXIF rotation, sha256."""

    path: Path
    caption: str
    height: int
    width: int
    digest: str


@dataclass
class ScanResult:
    """Usable samples in path order, skipped files with reasons, textfile fallbacks."""

    root: Path
    samples: list[Sample] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    caption_fallbacks: list[Path] = field(default_factory=list)


def list_images(root: Path, recursive: bool = True) -> list[Path]:
    """Image files under `root` by extension (any case), sorted; hidden entries ignored."""
    candidates = root.rglob("*") if recursive else root.iterdir()
    found = []
    for path in candidates:
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def file_digest(data: bytes) -> str:
    """sha256 hex of an input file's bytes."""
    return hashlib.sha256(data).hexdigest()


def scan_folder(
    path: str | Path,
    captions: CaptionRule | str = "textfile",
    *,
    recursive: bool = True,
) -> ScanResult:
    """Captioned samples from the images in `path`; unusable files are listed as skipped.

    Raises DataError when the folder does not exist; an empty result is the caller's call.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; check the instance_data_dir")
    rule = captions if isinstance(captions, CaptionRule) else CaptionRule(captions)
    result = ScanResult(root=root)
    for image_path in list_images(root, recursive):
        try:
            data = _read(image_path)
            height, width = read_size(image_path, data)
            caption, fell_back = rule.caption(image_path)
        except DataError as error:
            result.skipped.append((image_path, error.message))
            continue
        result.samples.append(Sample(image_path, caption, height, width, file_digest(data)))
        if fell_back:
            result.caption_fallbacks.append(image_path)
    return result


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}; check its permissions") from error
