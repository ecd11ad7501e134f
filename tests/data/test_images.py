"""load_image converts every mode to RGB the right way; prepare's crop matches its time ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from expertune.data.images import load_image, plan_crop, prepare, read_size
from expertune.errors import DataError


def saved(tmp_path, image: Image.Image, name: str = "x.png", **save_args) -> Image.Image:
    path = tmp_path / name
    image.save(path, **save_args)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == image.size
    return out


def pixel(image: Image.Image, xy=(0, 0)) -> tuple[int, int, int]:
    return image.getpixel(xy)


def test_rgb_and_greyscale(tmp_path):
    assert pixel(saved(tmp_path, Image.new("RGB", (4, 4), (10, 20, 30)))) == (10, 20, 30)
    assert pixel(saved(tmp_path, Image.new("L", (4, 4), 100))) == (100, 100, 100)
    assert pixel(saved(tmp_path, Image.new("1", (4, 4), 1))) == (255, 255, 255)


def test_alpha_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert pixel(saved(tmp_path, rgba)) == (255, 255, 255)
    half = pixel(saved(tmp_path, Image.new("RGBA", (4, 4), (0, 0, 0, 128))))
    assert all(abs(c - 127) <= 1 for c in half)
    la = Image.new("LA", (4, 4), (0, 0))
    assert pixel(saved(tmp_path, la)) == (255, 255, 255)
    assert pixel(saved(tmp_path, Image.new("LA", (4, 4), (40, 255)))) == (40, 40, 40)


def test_palette_with_and_without_transparency(tmp_path):
    palette = Image.new("P", (4, 4), 1)
    palette.putpalette([0, 0, 0, 200, 30, 60] + [0] * 762)
    assert pixel(saved(tmp_path, palette)) == (200, 30, 60)
    see_through = saved(tmp_path, palette, "t.png", transparency=1)
    assert pixel(see_through) == (255, 255, 255)


def test_cmyk(tmp_path):
    assert pixel(saved(tmp_path, Image.new("CMYK", (4, 4), (0, 0, 0, 0)), "c.jpg")) == (
        255,
        255,
        255,
    )
    red = pixel(saved(tmp_path, Image.new("CMYK", (4, 4), (0, 255, 255, 0)), "c.tif"))
    assert red == (255, 0, 0)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 128 * 257, 65535, 1000]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    out = saved(tmp_path, image, "g16.png")
    assert [pixel(out, (x, 0))[0] for x in range(4)] == [0, 128, 255, 4]


def test_exif_orientation_is_applied(tmp_path):
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: display needs a 90 degree clockwise turn
    path = tmp_path / "rotated.png"
    image.save(path, exif=exif)
    out = load_image(path)
    assert out.size == (20, 40)
    assert pixel(out, (10, 5)) == (255, 0, 0) and pixel(out, (10, 35)) == (0, 0, 255)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.png", b""),
        ("text.jpg", b"this is not an image\n"),
        ("noise.webp", bytes(range(256)) * 4),
    ],
)
def test_unreadable_files_raise_data_error_naming_them(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=name):
        load_image(path)


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_truncated_file_raises(tmp_path, suffix):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    whole = tmp_path / f"whole.{suffix}"
    noise.save(whole)
    cut = tmp_path / f"cut.{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(DataError, match=f"cut.{suffix}"):
        load_image(cut)


@pytest.mark.parametrize(
    ("height", "width", "resolution", "time_ids", "resized"),
    [
        (100, 100, 64, (100, 100, 0, 0, 64, 64), (64, 64)),
        (96, 128, 64, (96, 128, 0, 10, 64, 64), (64, 85)),  # round(10.5) == 10
        (128, 96, 64, (128, 96, 10, 0, 64, 64), (85, 64)),
        (1536, 1024, 1024, (1536, 1024, 256, 0, 1024, 1024), (1536, 1024)),
        (50, 40, 64, (50, 40, 8, 0, 64, 64), (80, 64)),  # upscaled
        (100, 200, (64, 128), (100, 200, 0, 0, 64, 128), (64, 128)),  # a bucket, no crop
    ],
)
def test_plan_follows_the_sdxl_example_arithmetic(height, width, resolution, time_ids, resized):
    plan = plan_crop(height, width, resolution)
    assert plan.time_ids == time_ids
    assert plan.resized == resized


@pytest.mark.parametrize(("height", "width"), [(120, 200), (200, 120), (90, 90), (48, 80)])
def test_time_ids_describe_the_pixels_actually_cropped(height, width):
    """A ramp whose value is the original coordinate shows where the crop came from."""
    long_side = max(height, width)
    ramp = np.arange(long_side, dtype=np.float64)
    grid = ramp[None, :width].repeat(height, 0) if width >= height else ramp[:height, None]
    grid = np.broadcast_to(grid, (height, width)).astype(np.uint8)
    prepared = prepare(Image.fromarray(grid).convert("RGB"), 64)
    oh, ow, top, left, th, tw = prepared.time_ids
    assert (oh, ow, th, tw) == (height, width, 64, 64)
    values = (prepared.pixels[0] + 1) * 127.5  # back to the ramp's units
    rh, rw = prepared.plan.resized
    if width >= height:  # the ramp runs along x: column j of the crop is resized col left + j
        expected = (left + 32 + 0.5) * width / rw - 0.5
        assert abs(values[32, 32].item() - expected) < 1.0
        assert top == 0
    else:
        expected = (top + 32 + 0.5) * height / rh - 0.5
        assert abs(values[32, 32].item() - expected) < 1.0
        assert left == 0


def test_prepared_pixels_are_chw_float_in_range():
    image = Image.new("RGB", (80, 64), (255, 255, 255))
    image.paste((0, 0, 0), (0, 0, 40, 64))
    prepared = prepare(image, 32)
    assert prepared.pixels.shape == (3, 32, 32) and prepared.pixels.dtype == torch.float32
    assert prepared.pixels.min() >= -1.0 and prepared.pixels.max() <= 1.0
    assert prepared.pixels[:, 16, 0].tolist() == [-1.0, -1.0, -1.0]
    assert prepared.pixels[:, 16, -1].tolist() == [1.0, 1.0, 1.0]


def test_unknown_crop_mode_is_refused():
    with pytest.raises(ValueError, match="crop mode"):
        plan_crop(64, 64, 32, crop="face")


def test_corner_and_random_crops():
    corner = plan_crop(96, 128, 64, crop="corner")
    assert (corner.top, corner.left, corner.resized) == (0, 0, (64, 85))
    drawn = {plan_crop(96, 128, 64, crop="random", seed=str(s)).left for s in range(40)}
    assert drawn <= set(range(0, 22)) and len(drawn) > 5
    again = plan_crop(96, 128, 64, crop="random", seed="7")
    assert again == plan_crop(96, 128, 64, crop="random", seed="7")


@pytest.mark.parametrize("crop", ["center", "corner", "random"])
def test_render_crops_where_the_plan_says(crop):
    """A ramp whose value is the original column shows the crop's left edge."""
    ramp = np.tile(np.arange(128, dtype=np.uint8), (96, 1))
    prepared = prepare(Image.fromarray(ramp).convert("RGB"), 64, crop, seed="3")
    values = (prepared.pixels[0, 10] + 1) * 127.5
    rw = prepared.plan.resized[1]
    expected = (prepared.plan.left + 0.5) * 128 / rw - 0.5  # centre of output column 0
    assert abs(values[0].item() - expected) < 1.5


def test_read_size_uses_the_header_and_exif(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "r.jpg"
    Image.new("RGB", (40, 20)).save(path, exif=exif)
    assert read_size(path, path.read_bytes()) == (40, 20)
    with pytest.raises(DataError, match="empty file"):
        read_size(path, b"")
