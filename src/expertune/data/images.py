"""Open an image as RGB, then resize and crop it to a training size with SDXL's time ids.

SDXL is conditioned on how its training image was made (Podell et al. 2023, "SDXL", §2.2):
the original size, the top-left corner of the crop and the target size. These must
describe the real resize and crop, so `plan_crop` computes the geometry once and both the
pixels (`prepare`) and the time ids come from it. The convention follows diffusers'
`train_text_to_image_sdxl.py`: scale so the image covers the target (the shorter side
becomes the resolution for a square target), then centre crop; the crop corner is in
the coordinates of the resized image. Besides the centre crop there are SimpleTuner's
"corner" (the top-left corner, as SimpleTuner crops now) and "random" (a corner drawn
from a seed, the image's content digest, so the same image gets the same crop in every
job that shares the cache).
"""

from __future__ import annotations

import contextlib
import io
import logging
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from expertune.errors import DataError

log = logging.getLogger(__name__)

# Bump when decoding, resampling or cropping changes, so cached latents are rebuilt.
PREPROCESS_VERSION = "1"
RESAMPLE = Image.Resampling.LANCZOS
CROP_MODES = ("center", "corner", "random")
ORIENTATION = 0x0112  # EXIF tag; values 5-8 swap width and height
_SIXTEEN_BIT = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_WITH_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}


def load_image(path: str | Path, data: bytes | None = None) -> Image.Image:
    """Decode `path` (or its already read bytes `data`) fully, apply its EXIF orientation
    and return an RGB image.

    Raises DataError naming the file when it is empty, truncated, corrupt or not an image.
    """
    path = Path(path)
    with _named_warnings(path):
        try:
            with Image.open(path if data is None else io.BytesIO(data)) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
        except _DECODE_ERRORS as error:
            raise _unreadable(path, error) from error
        if image.width == 0 or image.height == 0:
            raise DataError(f"image {path} has zero size; remove the file")
        return to_rgb(image)


def read_size(path: str | Path, data: bytes) -> tuple[int, int]:
    """(height, width) after EXIF orientation, from the header alone (no pixel decoding).

    Raises DataError when the bytes are empty or not an image; a file truncated after its
    header passes here and fails in `load_image` when it is decoded for encoding.
    """
    if not data:
        raise DataError(f"image {path} is an empty file (0 bytes); remove it")
    try:
        with _named_warnings(Path(path)), Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
            orientation = _orientation(opened.info.get("exif"))
    except _DECODE_ERRORS as error:
        raise _unreadable(path, error) from error
    if width == 0 or height == 0:
        raise DataError(f"image {path} has zero size; remove the file")
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@contextlib.contextmanager
def _named_warnings(path: Path) -> Iterator[None]:
    """Pillow's warnings (a huge image, odd transparency, bad EXIF) as one log line each
    that names the file, instead of a bare library warning."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for message in {str(w.message) for w in caught}:
        log.warning("image %s: %s", path, " ".join(message.split()))


def _unreadable(path: Path, error: Exception) -> DataError:
    if isinstance(error, UnidentifiedImageError):
        return DataError(f"{path} is not an image Pillow can read; fix or remove the file")
    return DataError(f"cannot read image {path}: {error}; fix or remove the file")


def _orientation(raw: bytes | None) -> int:
    """The EXIF orientation in raw EXIF bytes from the header (`getexif()` would decode a
    PNG's pixels to look for a late eXIf chunk)."""
    if not raw:
        return 1
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(ORIENTATION, 1)


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if image.mode in _SIXTEEN_BIT:
        wide = np.asarray(image, dtype=np.float64)
        narrow = np.clip(np.round(wide / 257.0), 0, 255).astype(np.uint8)
        return Image.fromarray(narrow, mode="L").convert("RGB")
    if image.mode == "F":
        narrow = np.clip(np.round(np.asarray(image)), 0, 255).astype(np.uint8)
        return Image.fromarray(narrow, mode="L").convert("RGB")
    if image.mode in _WITH_ALPHA or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


@dataclass(frozen=True)
class CropPlan:
    """Where an image of `original` size goes: resized to `resized`, cropped to `target`.

    All sizes are (height, width); `top`, `left` are the crop corner in the resized image.
    """

    original: tuple[int, int]
    resized: tuple[int, int]
    top: int
    left: int
    target: tuple[int, int]

    @property
    def time_ids(self) -> tuple[int, int, int, int, int, int]:
        """SDXL's add_time_ids: original (h, w), crop (top, left), target (h, w)."""
        return (*self.original, self.top, self.left, *self.target)


def target_size(resolution: int | tuple[int, int]) -> tuple[int, int]:
    """A square side or an explicit (height, width) as (height, width)."""
    if isinstance(resolution, int):
        return (resolution, resolution)
    height, width = resolution
    return (int(height), int(width))


def plan_crop(
    height: int,
    width: int,
    resolution: int | tuple[int, int],
    crop: str = "center",
    seed: str = "",
) -> CropPlan:
    """Scale an image of (height, width) to cover the target, then crop it as `crop` says.

    For a square target and "center" this is torchvision's Resize(shorter side) +
    CenterCrop, the arithmetic diffusers' SDXL example uses (floor for the long side,
    round for the corner). "random" draws the corner from `seed`.
    """
    if crop not in CROP_MODES:
        raise ValueError(f"crop mode {crop!r} is not one of {CROP_MODES}")
    th, tw = target_size(resolution)
    if th * width >= tw * height:  # height binds: th/height >= tw/width
        rh, rw = th, max(tw, width * th // height)
    else:
        rh, rw = max(th, height * tw // width), tw
    if crop == "center":
        top = round((rh - th) / 2.0)  # Python rounds half to even, as torchvision does
        left = round((rw - tw) / 2.0)
    elif crop == "corner":
        top, left = 0, 0
    else:
        draw = random.Random(f"crop:{seed}")
        top, left = draw.randint(0, rh - th), draw.randint(0, rw - tw)
    return CropPlan((height, width), (rh, rw), top, left, (th, tw))


@dataclass(frozen=True)
class Prepared:
    """A training-ready image: pixels (C, H, W) float32 in [-1, 1] and its crop plan."""

    pixels: torch.Tensor
    plan: CropPlan

    @property
    def time_ids(self) -> tuple[int, int, int, int, int, int]:
        return self.plan.time_ids


def prepare(
    image: Image.Image, resolution: int | tuple[int, int], crop: str = "center", seed: str = ""
) -> Prepared:
    """Resize and crop an RGB image as `plan_crop` says and scale it to [-1, 1]."""
    plan = plan_crop(image.height, image.width, resolution, crop, seed)
    return Prepared(pixels=render(image, plan), plan=plan)


def render(image: Image.Image, plan: CropPlan) -> torch.Tensor:
    """The pixels (C, H, W) in [-1, 1] of `image` resized and cropped as `plan` says."""
    if (image.height, image.width) != plan.original:
        raise ValueError(f"image is {image.height}x{image.width}, the plan is for {plan.original}")
    rh, rw = plan.resized
    th, tw = plan.target
    resized = image.convert("RGB").resize((rw, rh), resample=RESAMPLE)
    cropped = resized.crop((plan.left, plan.top, plan.left + tw, plan.top + th))
    array = np.asarray(cropped, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()
