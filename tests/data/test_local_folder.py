"""scan_folder keeps good images in order with size and digest, skips what it cannot read."""

from __future__ import annotations

import hashlib

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
    result = scan_folder(messy)
    names = [s.path.relative_to(messy).as_posix() for s in result.samples]
    good = ["a_upper.JPG", "b_good.png", "c.webp", "d.bmp", "sub/e.png", "tiny.png"]
    assert names == [*good, "truncated.png"]  # its pixels are decoded (and fail) later
    captions = {s.path.name: s.caption for s in result.samples}
    assert captions["b_good.png"] == "a red rectangle"
    assert captions["a_upper.JPG"] == "a upper"
    assert all((s.height, s.width) == (48, 64) for s in result.samples[:5])
    good = result.samples[1]
    assert good.digest == hashlib.sha256(good.path.read_bytes()).hexdigest()
    fallbacks = [p.name for p in result.caption_fallbacks]
    assert fallbacks == ["a_upper.JPG", "c.webp", "d.bmp", "e.png", "tiny.png", "truncated.png"]


def test_unreadable_files_are_skipped_with_reasons(messy):
    result = scan_folder(messy)
    skipped = {path.name: reason for path, reason in result.skipped}
    # the header is read, not the pixels: a file truncated after it is found when encoding
    assert set(skipped) == {"zero.png", "text.jpg", "corrupt.jpeg"}
    assert all(name in reason for name, reason in skipped.items())
    assert "empty file" in skipped["zero.png"]


def test_size_comes_from_the_header_after_exif_rotation(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed turned by 90 degrees
    image(tmp_path / "turned.jpg", size=(40, 20), format="JPEG", exif=exif)
    (sample,) = scan_folder(tmp_path).samples
    assert (sample.height, sample.width) == (40, 20)


def test_not_recursive_on_request(messy):
    result = scan_folder(messy, recursive=False)
    assert "e.png" not in {s.path.name for s in result.samples}


def test_missing_folder_names_it(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        scan_folder(tmp_path / "nowhere")


def test_unreadable_caption_file_skips_its_image(tmp_path):
    image(tmp_path / "x.png")
    (tmp_path / "x.txt").write_bytes(b"\xff\xfe\xfa bad")
    result = scan_folder(tmp_path)
    assert not result.samples and "x.txt" in result.skipped[0][1]
