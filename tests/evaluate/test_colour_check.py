"""The prompt-colour checker reads every drawn shape image back to the colours its caption
names, at both extreme widths, and skips prompts of another form."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from PIL import Image, ImageFilter

from expertune.data.shape_images import MAX_WIDTH, MIN_WIDTH, PALETTE, draw_shape, grid_specs
from expertune.evaluate.colour_check import check, colour_accuracy, expected_colours, nearest_colour


@pytest.mark.parametrize("width", [MIN_WIDTH, MAX_WIDTH])
def test_every_pair_and_shape_reads_back(width):
    specs = [replace(s, width=width) for s in grid_specs()]
    images = [draw_shape(s) for s in specs]
    assert len(specs) == 56 * 3
    assert colour_accuracy(images, [s.caption for s in specs]) == 1.0


def test_blur_does_not_change_the_reading():
    specs = grid_specs()
    images = [draw_shape(s).filter(ImageFilter.GaussianBlur(2)) for s in specs]
    assert colour_accuracy(images, [s.caption for s in specs]) == 1.0


def test_a_wrong_image_is_counted_wrong_and_says_what_it_saw():
    spec = grid_specs()[0]
    swapped = replace(spec, foreground=spec.background, background=spec.foreground)
    reading = check(draw_shape(swapped), spec.caption)
    assert not reading.correct
    assert (reading.foreground, reading.background) == (spec.background, spec.foreground)
    assert colour_accuracy([draw_shape(swapped), draw_shape(spec)], [spec.caption] * 2) == 0.5


def test_other_prompts_are_skipped():
    assert expected_colours("a photo of a cat") is None
    assert expected_colours("a orange circle on a red background") is None  # not in the palette
    assert expected_colours("A Red circle on a blue background, detailed") == ("red", "blue")
    assert colour_accuracy([Image.new("RGB", (64, 64))], ["a dog"]) is None


def test_nearest_colour_of_each_palette_entry_is_itself():
    for name, rgb in PALETTE.items():
        assert nearest_colour(np.array(rgb, dtype=np.float32)) == name
