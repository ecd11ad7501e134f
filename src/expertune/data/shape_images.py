"""The procedural domain of the pretrained tiny parent: one named shape on a plain background.

Captions read `a {colour} {shape} on a {colour} background`; eight colours and three
shapes, the shape centred and between 40 % and 60 % of the image wide. Some colour
pairs are held out of the parent's training entirely (`HELD_OUT_PAIRS`), so its prompt
following can be measured on combinations it never saw. Drawing is deterministic for a
given seed. `evaluate/colour_check.py` reads the same palette back out of an image.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

PALETTE = {  # name -> RGB: the corners of the colour cube, so they are far apart
    "red": (220, 30, 30),
    "green": (30, 190, 50),
    "blue": (30, 60, 220),
    "yellow": (235, 220, 40),
    "cyan": (40, 210, 220),
    "magenta": (210, 40, 200),
    "white": (240, 240, 240),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")  # what the parent learns
DEMO_SHAPES = ("diamond", "plus")  # what the demo's experts learn: shapes the parent never saw
ALL_PAIRS = tuple(itertools.permutations(PALETTE, 2))  # (foreground, background), 56 pairs
HELD_OUT_PAIRS = (  # never drawn for the parent; each colour appears once on each side
    ("red", "cyan"),
    ("green", "magenta"),
    ("blue", "yellow"),
    ("yellow", "black"),
    ("cyan", "white"),
    ("magenta", "green"),
    ("white", "red"),
    ("black", "blue"),
)
TRAIN_PAIRS = tuple(p for p in ALL_PAIRS if p not in HELD_OUT_PAIRS)
MIN_WIDTH, MAX_WIDTH = 0.4, 0.6  # the shape's width as a fraction of the image


@dataclass(frozen=True)
class ShapeSpec:
    """What one image shows; `caption` says it in words."""

    foreground: str
    background: str
    shape: str
    width: float = 0.5  # fraction of the image

    @property
    def caption(self) -> str:
        return f"a {self.foreground} {self.shape} on a {self.background} background"


def draw_shape(spec: ShapeSpec, size: int = 64) -> Image.Image:
    """The image of `spec`: its shape centred, filled flat, on a flat background."""
    image = Image.new("RGB", (size, size), PALETTE[spec.background])
    side = spec.width * size
    lo, hi = (size - side) / 2, (size + side) / 2
    fill = PALETTE[spec.foreground]
    draw = ImageDraw.Draw(image)
    if spec.shape == "circle":
        draw.ellipse((lo, lo, hi, hi), fill=fill)
    elif spec.shape == "square":
        draw.rectangle((lo, lo, hi, hi), fill=fill)
    elif spec.shape == "triangle":
        draw.polygon([(size / 2, lo), (lo, hi), (hi, hi)], fill=fill)
    elif spec.shape == "diamond":
        mid = size / 2
        draw.polygon([(mid, lo), (hi, mid), (mid, hi), (lo, mid)], fill=fill)
    elif spec.shape == "plus":
        arm = side / 6
        draw.rectangle((lo, size / 2 - arm, hi, size / 2 + arm), fill=fill)
        draw.rectangle((size / 2 - arm, lo, size / 2 + arm, hi), fill=fill)
    else:
        raise ValueError(f"unknown shape {spec.shape!r}; one of {', '.join(SHAPES + DEMO_SHAPES)}")
    return image


def sample_specs(
    n: int,
    *,
    seed: int,
    pairs: tuple[tuple[str, str], ...] = TRAIN_PAIRS,
    shapes: tuple[str, ...] = SHAPES,
) -> list[ShapeSpec]:
    """`n` random specs over `pairs` x `shapes`, widths uniform in [MIN_WIDTH, MAX_WIDTH]."""
    rng = random.Random(seed)
    return [
        ShapeSpec(
            *rng.choice(pairs), rng.choice(shapes), round(rng.uniform(MIN_WIDTH, MAX_WIDTH), 3)
        )
        for _ in range(n)
    ]


def grid_specs(pairs=ALL_PAIRS, shapes=SHAPES) -> list[ShapeSpec]:
    """Every pair x shape once, at the middle width: the prompt-following test set."""
    return [ShapeSpec(fg, bg, shape) for (fg, bg) in pairs for shape in shapes]


def write_shape_dataset(out_dir, specs: list[ShapeSpec], size: int = 64) -> list:
    """PNG images with same-stem .txt captions (the textfile caption strategy); their paths."""
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, spec in enumerate(specs):
        path = out / f"{index:03d}_{spec.foreground}_{spec.shape}_on_{spec.background}.png"
        draw_shape(spec, size).save(path, format="PNG")
        path.with_suffix(".txt").write_text(spec.caption + "\n", encoding="utf-8")
        paths.append(path)
    return paths
