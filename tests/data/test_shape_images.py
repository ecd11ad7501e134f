"""The shape domain: deterministic specs, held-out pairs never drawn for training, shapes
centred and at least a third of the image wide."""

from __future__ import annotations

import numpy as np

from expertune.data.shape_images import (
    ALL_PAIRS,
    HELD_OUT_PAIRS,
    MIN_WIDTH,
    PALETTE,
    TRAIN_PAIRS,
    ShapeSpec,
    draw_shape,
    sample_specs,
)


def test_specs_are_deterministic_and_avoid_held_out_pairs():
    first, again = sample_specs(500, seed=3), sample_specs(500, seed=3)
    assert first == again and first != sample_specs(500, seed=4)
    assert not {(s.foreground, s.background) for s in first} & set(HELD_OUT_PAIRS)
    assert len(TRAIN_PAIRS) + len(HELD_OUT_PAIRS) == len(ALL_PAIRS) == 56
    assert all(MIN_WIDTH <= s.width <= 0.6 for s in first)


def test_held_out_pairs_cover_each_colour_once_on_each_side():
    assert sorted(fg for fg, _ in HELD_OUT_PAIRS) == sorted(PALETTE)
    assert sorted(bg for _, bg in HELD_OUT_PAIRS) == sorted(PALETTE)


def test_a_square_is_centred_and_a_third_wide():
    spec = ShapeSpec("red", "blue", "square", MIN_WIDTH)
    pixels = np.asarray(draw_shape(spec, size=64))
    red = np.all(pixels == PALETTE["red"], axis=2)
    ys, xs = np.nonzero(red)
    assert xs.max() - xs.min() + 1 >= 64 / 3
    assert abs((xs.min() + xs.max()) / 2 - 31.5) <= 1 and abs((ys.min() + ys.max()) / 2 - 31.5) <= 1
    assert spec.caption == "a red square on a blue background"
