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
import os
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


def list_images(
    root: Path, recursive: bool = True, problems: list[tuple[Path, str]] | None = None
) -> list[Path]:
    """Image files under `root` by extension (any case), sorted; hidden entries ignored.

    Folder links are followed (a link back to a folder already walked is not entered
    again, so loops stop). What cannot be used is appended to `problems` as (path,
    reason): folders that cannot be read, broken links, and captioned files of a type
    that is not trained (a .gif or .tiff beside its .txt).
    """
    problems = [] if problems is None else problems
    found, seen = [], set()

    def unreadable(error: OSError) -> None:
        where = Path(error.filename or root)
        problems.append((where, f"cannot read folder {where}: {error.strerror}; it is left out"))

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        here = Path(folder)
        identity = _identity(here)
        if identity in seen:  # a link to a folder already walked
            dirs[:] = []
            continue
        seen.add(identity)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        for name in files:
            if name.startswith("."):
                continue
            path = here / name
            suffix = path.suffix.lower()
            if suffix in IMAGE_SUFFIXES:
                if path.is_file():
                    found.append(path)
                else:
                    problems.append((path, f"{path} is a broken link; it is left out"))
            elif suffix not in (".txt", "") and path.with_suffix(".txt").is_file():
                problems.append(
                    (
                        path,
                        f"{path} has a caption but is a {suffix} file, which is not trained "
                        f"(only {', '.join(IMAGE_SUFFIXES)}); convert it to PNG",
                    )
                )
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _identity(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino


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
    for image_path in list_images(root, recursive, problems=result.skipped):
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
