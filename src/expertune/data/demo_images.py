"""A small captioned image set drawn procedurally, so the demo needs no download.

Coloured shapes (circles, squares, triangles, stripes) on plain or gradient backgrounds,
each with a same-stem `.txt` caption that says what is drawn ("a red circle on a blue
background"). Some images are portrait or landscape, so cropping and SDXL's time ids are
exercised. Deterministic for a given seed: same bytes every run.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40),
    "orange": (240, 140, 30),
    "yellow": (240, 220, 40),
    "green": (40, 170, 70),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
SHAPES = ("circle", "square", "triangle", "stripes")


def _background(size: tuple[int, int], rng: random.Random) -> tuple[Image.Image, str]:
    """A plain or vertical-gradient background of (width, height) and its description."""
    first, second = rng.sample(sorted(COLOURS), 2)
    width, height = size
    if rng.random() < 0.5:
        return Image.new("RGB", size, COLOURS[first]), f"a {first} background"
    ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    top, bottom = np.array(COLOURS[first]), np.array(COLOURS[second])
    pixels = (1 - ramp) * top + ramp * bottom
    array = np.broadcast_to(pixels, (height, width, 3)).round().astype(np.uint8)
    return Image.fromarray(array, "RGB"), f"a {first} to {second} gradient background"


def _draw(image: Image.Image, shape: str, colour: str, rng: random.Random) -> None:
    """Draw `shape` in `colour` at a random place and size inside the image."""
    width, height = image.size
    side = rng.randint(min(width, height) // 3, min(width, height) * 2 // 3)
    x0, y0 = rng.randint(0, width - side), rng.randint(0, height - side)
    fill = COLOURS[colour]
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((x0, y0, x0 + side, y0 + side), fill=fill)
    elif shape == "square":
        draw.rectangle((x0, y0, x0 + side, y0 + side), fill=fill)
    elif shape == "triangle":
        draw.polygon([(x0 + side // 2, y0), (x0, y0 + side), (x0 + side, y0 + side)], fill=fill)
    else:
        stripe = max(2, side // 6)
        for x in range(0, width, 2 * stripe):
            draw.rectangle((x, 0, x + stripe - 1, height), fill=fill)


def make_demo_images(out_dir: str | Path, n: int = 12, size: int = 96, seed: int = 0) -> list[Path]:
    """Write `n` PNG images with .txt captions to `out_dir`; returns the image paths.

    Every third image is portrait (size x 4/3 size tall) and every fourth landscape.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    long_side = size * 4 // 3
    paths = []
    for index in range(n):
        dims = (size, long_side) if index % 3 == 1 else (size, size)
        dims = (long_side, size) if index % 4 == 3 else dims
        image, background = _background(dims, rng)
        shape = SHAPES[index % len(SHAPES)]
        colour = rng.choice([c for c in COLOURS if c not in background.split()])
        _draw(image, shape, colour, rng)
        caption = _caption(shape, colour, background)
        path = out / f"{index:03d}_{colour}_{shape}.png"
        image.save(path, format="PNG")
        path.with_suffix(".txt").write_text(caption + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def _caption(shape: str, colour: str, background: str) -> str:
    if shape == "stripes":
        return f"{colour} stripes on {background}"
    return f"a {colour} {shape} on {background}"
