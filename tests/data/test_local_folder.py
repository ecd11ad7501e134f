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


def test_folder_links_are_followed_and_loops_stop(tmp_path):
    root = tmp_path / "data"
    image(root / "a.png")
    image(tmp_path / "elsewhere" / "b.png")
    (root / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (tmp_path / "elsewhere" / "back").symlink_to(root, target_is_directory=True)  # a loop
    (root / "again").symlink_to(root / "linked", target_is_directory=True)  # seen twice
    result = scan_folder(root)
    names = [p.relative_to(root).as_posix() for p in (s.path for s in result.samples)]
    assert names == ["a.png", "again/b.png"]  # each folder once, whichever path came first
    assert result.skipped == []


def test_what_the_walk_cannot_use_is_named(tmp_path, monkeypatch):
    import os

    root = tmp_path / "data"
    image(root / "a.png")
    image(root / "locked" / "c.png")
    Image.new("RGB", (8, 8)).save(root / "anim.gif")
    (root / "anim.txt").write_text("a captioned gif")
    Image.new("RGB", (8, 8)).save(root / "scan.tiff")
    (root / "scan.txt").write_text("a captioned tiff")
    (root / "gone.png").symlink_to(tmp_path / "deleted.png")
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):  # root reads everything, so refuse by hand
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    result = scan_folder(root)
    assert [s.path.name for s in result.samples] == ["a.png"]
    reasons = {p.name: why for p, why in result.skipped}
    assert "cannot read folder" in reasons["locked"] and "Permission denied" in reasons["locked"]
    assert "is a .gif file, which is not trained" in reasons["anim.gif"]
    assert "is a .tiff file" in reasons["scan.tiff"]
    assert "broken link" in reasons["gone.png"]


def test_an_unreadable_folder_is_not_reported_as_empty(tmp_path, monkeypatch):
    import os

    from expertune.data.dataset_config import single_folder
    from expertune.data.planning import require_images
    from expertune.data.report import DataReport

    root = tmp_path / "data"
    image(root / "a.png")
    monkeypatch.setattr(os, "scandir", lambda p=".": (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", str(p))
    ))  # fmt: skip
    report = DataReport(skipped=scan_folder(root).skipped)
    with pytest.raises(DataError) as err:
        require_images(single_folder(str(root), 64).images[0], [], report)
    assert "cannot read folder" in str(err.value) and "no image files found" not in str(err.value)


def test_pillow_warnings_name_the_file(tmp_path, monkeypatch, caplog):
    from expertune.data.images import read_size

    path = image(tmp_path / "big.png", size=(64, 64))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64 - 100)  # a "decompression bomb"
    with caplog.at_level("WARNING"):
        assert read_size(path, path.read_bytes()) == (64, 64)
    assert any(
        str(path) in r.getMessage() and "exceeds limit" in r.getMessage() for r in caplog.records
    )
