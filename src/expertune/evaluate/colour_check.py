"""Does an image show the colours its prompt names? Centre colour vs border colour.

The pretrained tiny parent draws `a {colour} {shape} on a {colour} background` with the
shape centred; so the median colour of the central region should be the named
foreground and the median colour of the border ring the named background. Each is
mapped to the nearest colour of the palette (Euclidean in RGB). A prompt whose words
are not of that form is skipped, not counted wrong. The report shows the accuracy
beside eval loss; the parent's build checks it against its targets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from PIL import Image

from expertune.data.shape_images import PALETTE

CENTRE = 0.1  # half-width of the central square, as a fraction of the side (shapes are >= 0.4)
BORDER = 0.08  # width of the border ring, as a fraction of the side
_CAPTION = re.compile(r"\ba (\w+) (\w+) on a (\w+) background\b")


@dataclass(frozen=True)
class ColourReading:
    """The named colours read from one image and whether they match its prompt."""

    foreground: str
    background: str
    expected: tuple[str, str]

    @property
    def correct(self) -> bool:
        return (self.foreground, self.background) == self.expected


def expected_colours(prompt: str) -> tuple[str, str] | None:
    """(foreground, background) a prompt names, or None when it is not of the checked form."""
    match = _CAPTION.search(prompt.lower())
    if match is None or match[1] not in PALETTE or match[3] not in PALETTE:
        return None
    return match[1], match[3]


def nearest_colour(rgb: np.ndarray) -> str:
    """The palette name nearest to one RGB triple."""
    names = list(PALETTE)
    table = np.array([PALETTE[n] for n in names], dtype=np.float32)
    return names[int(np.argmin(((table - rgb) ** 2).sum(axis=1)))]


def read_colours(image: Image.Image) -> tuple[str, str]:
    """(centre colour, border colour) of `image` as palette names (medians of each region)."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    h, w, _ = pixels.shape
    cy, cx, ry, rx = h // 2, w // 2, max(1, int(h * CENTRE)), max(1, int(w * CENTRE))
    centre = pixels[cy - ry : cy + ry, cx - rx : cx + rx].reshape(-1, 3)
    by, bx = max(1, int(h * BORDER)), max(1, int(w * BORDER))
    ring = np.ones((h, w), dtype=bool)
    ring[by : h - by, bx : w - bx] = False
    border = pixels[ring]
    return nearest_colour(np.median(centre, axis=0)), nearest_colour(np.median(border, axis=0))


def check(image: Image.Image, prompt: str) -> ColourReading | None:
    """The reading of `image` against `prompt`, or None for a prompt of another form."""
    expected = expected_colours(prompt)
    if expected is None:
        return None
    return ColourReading(*read_colours(image), expected)


def colour_accuracy(images: list[Image.Image], prompts: list[str]) -> float | None:
    """Fraction of checkable (image, prompt) pairs whose both colours match; None if none."""
    readings = [r for r in map(check, images, prompts) if r is not None]
    if not readings:
        return None
    return sum(r.correct for r in readings) / len(readings)
