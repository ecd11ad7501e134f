"""Scan a local folder of images into captioned samples, before any training starts.

Every file is decoded once here, so a truncated or corrupt image is found (and skipped,
with its reason) now rather than in the middle of a run. Sizes recorded here are after
EXIF rotation, which is what `images.plan_crop` needs to compute time ids without
decoding again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from expertune.data.captions import caption_for
from expertune.data.images import load_image, plan_crop
from expertune.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


@dataclass(frozen=True)
class Sample:
    """One usable image: its file, caption and size (height, width) after EXIF rotation."""

    path: Path
    caption: str
    height: int
    width: int


@dataclass
class ScanResult:
    """Usable samples in path order, skipped files with reasons, and images to upscale."""

    root: Path
    samples: list[Sample] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    upscaled: list[Path] = field(default_factory=list)


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


def scan_folder(
    path: str | Path,
    resolution: int | tuple[int, int],
    *,
    caption_strategy: str = "textfile",
    recursive: bool = True,
) -> ScanResult:
    """Captioned samples from the images in `path`; unreadable files are skipped.

    Images smaller than `resolution` are kept (they are upscaled) and listed in `upscaled`.
    Raises DataError when the folder is missing or no usable image is left.
    """
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist; check the instance_data_dir")
    result = ScanResult(root=root)
    for image_path in list_images(root, recursive):
        try:
            image = load_image(image_path)
            caption = caption_for(image_path, caption_strategy)
        except DataError as error:
            result.skipped.append((image_path, error.message))
            continue
        result.samples.append(Sample(image_path, caption, image.height, image.width))
        if plan_crop(image.height, image.width, resolution).resized[0] > image.height:
            result.upscaled.append(image_path)
    if not result.samples:
        raise DataError(f"no usable images in {root} ({len(result.skipped)} skipped)")
    return result
