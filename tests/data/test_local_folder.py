"""scan_folder keeps good images in order, skips bad ones with reasons, refuses empty sets."""

from __future__ import annotations

import pytest
from PIL import Image

from expertune.data.local_folder import scan_folder
from expertune.errors import DataError


def image(path, size=(64, 48), colour=(200, 10, 10), **save_args):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, **save_args)
    return path


@pytest.fixture
def messy(tmp_path):
    root = tmp_path / "data"
    image(root / "b_good.png")
    image(root / "a_upper.JPG", format="JPEG")
    image(root / "c.webp", format="WEBP")
    image(root / "d.bmp", format="BMP")
    image(root / "sub" / "e.png")
    image(root / "tiny.png", size=(16, 16))
    (root / "b_good.txt").write_text("a red rectangle\n")
    (root / "zero.png").write_bytes(b"")
    (root / "text.jpg").write_text("not an image")
    whole = image(root / "whole.png", size=(64, 64)).read_bytes()
    (root / "whole.png").unlink()
    (root / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (root / "corrupt.jpeg").write_bytes(b"\xff\xd8\xff" + bytes(100))
    (root / "notes.md").write_text("ignored")
    image(root / ".hidden" / "f.png")
    return root


def test_good_images_listed_sorted_with_captions(messy):
    result = scan_folder(messy, 32)
    names = [s.path.relative_to(messy).as_posix() for s in result.samples]
    assert names == ["a_upper.JPG", "b_good.png", "c.webp", "d.bmp", "sub/e.png", "tiny.png"]
    captions = {s.path.name: s.caption for s in result.samples}
    assert captions["b_good.png"] == "a red rectangle"
    assert captions["a_upper.JPG"] == "a upper"
    assert all((s.height, s.width) == (48, 64) for s in result.samples[:5])


def test_bad_files_are_skipped_and_reported(messy):
    result = scan_folder(messy, 32)
    skipped = {path.name: reason for path, reason in result.skipped}
    assert set(skipped) == {"zero.png", "text.jpg", "truncated.png", "corrupt.jpeg"}
    assert all(name in reason for name, reason in skipped.items())


def test_small_images_are_kept_and_listed_as_upscaled(messy):
    result = scan_folder(messy, 32)
    assert [p.name for p in result.upscaled] == ["tiny.png"]
    assert len(scan_folder(messy, 64).upscaled) == 6


def test_not_recursive_on_request(messy):
    result = scan_folder(messy, 32, recursive=False)
    assert "e.png" not in {s.path.name for s in result.samples}


def test_missing_folder_names_it(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        scan_folder(tmp_path / "nowhere", 64)


def test_folder_with_no_usable_image_fails_before_training(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"")
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DataError, match=f"no usable images in {tmp_path}"):
        scan_folder(tmp_path, 64)
