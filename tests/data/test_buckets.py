"""Bucket sizes follow SimpleTuner's resolution types and crop aspects, aligned, repeatable."""

from __future__ import annotations

import pytest

from expertune.data.buckets import SizeRule, bucket_for, too_small
from expertune.data.dataset_config import AspectWeight


@pytest.mark.parametrize(
    ("rule", "aspect", "size"),
    [
        (SizeRule(1024, "pixel", 64), 1.0, (1024, 1024)),
        (SizeRule(1024, "pixel", 64), 1.5, (1024, 1536)),  # shorter side = resolution
        (SizeRule(1024, "pixel", 64), 0.75, (1344, 1024)),  # 1365.3 -> nearest multiple of 64
        (SizeRule(1024, "pixel_area", 64), 1.0, (1024, 1024)),
        (SizeRule(1024, "pixel_area", 64), 1.5, (832, 1280)),  # area ~ 1024^2
        (SizeRule(1.0, "area", 64), 1.0, (1024, 1024)),  # 1 megapixel: 1000 -> 1024
        (SizeRule(0.25, "area", 64), 2.0, (384, 704)),
        (SizeRule(64, "pixel", 16), 0.75, (80, 64)),
        (SizeRule(16, "pixel", 64), 1.0, (64, 64)),  # never below one alignment step
    ],
)
def test_bucket_sizes(rule, aspect, size):
    assert rule.size(aspect) == size
    assert all(side % rule.alignment == 0 for side in size)


def test_crop_aspects():
    rule = SizeRule(64, "pixel", 16)
    common = dict(aspects=(0.5, 1.0, 2.0), seed="s")
    assert bucket_for(96, 128, rule, crop=True, crop_aspect="square", **common) == (64, 64)
    assert bucket_for(96, 128, rule, crop=True, crop_aspect="preserve", **common) == (64, 80)
    assert bucket_for(96, 128, rule, crop=False, crop_aspect="square", **common) == (64, 80)
    assert bucket_for(96, 200, rule, crop=True, crop_aspect="closest", **common) == (64, 128)
    assert bucket_for(100, 90, rule, crop=True, crop_aspect="closest", **common) == (64, 64)


def test_random_aspect_is_weighted_and_fixed_per_image():
    rule = SizeRule(64, "pixel", 16)
    aspects = (AspectWeight(aspect=1.0, weight=9), AspectWeight(aspect=2.0, weight=1))
    draws = [
        bucket_for(96, 96, rule, crop=True, crop_aspect="random", aspects=aspects, seed=str(i))
        for i in range(200)
    ]
    assert set(draws) == {(64, 64), (64, 128)} and draws.count((64, 64)) > 150
    again = bucket_for(96, 96, rule, crop=True, crop_aspect="random", aspects=aspects, seed="7")
    assert again == draws[7]


@pytest.mark.parametrize(
    ("size", "minimum", "kind", "small"),
    [
        ((500, 800), 512, "pixel", True),  # shorter side
        ((512, 800), 512, "pixel", False),
        ((960, 1280), 1024, "pixel_area", False),  # 1.23 MP >= 1024^2
        ((900, 1000), 1024, "pixel_area", True),
        ((700, 700), 0.5, "area", True),  # 0.49 megapixels
        ((10, 10), None, "pixel", False),
    ],
)
def test_minimum_image_size_in_the_resolution_unit(size, minimum, kind, small):
    assert too_small(*size, minimum, kind) is small
