"""The demo image set is deterministic, captioned, partly non-square and scans cleanly."""

from __future__ import annotations

from PIL import Image

from expertune.data.demo_images import make_demo_images
from expertune.data.local_folder import scan_folder


def test_demo_images_are_deterministic_and_captioned(tmp_path):
    first = make_demo_images(tmp_path / "a", n=12, size=96, seed=3)
    second = make_demo_images(tmp_path / "b", n=12, size=96, seed=3)
    other = make_demo_images(tmp_path / "c", n=12, size=96, seed=4)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert [p.read_bytes() for p in first] != [p.read_bytes() for p in other]
    sizes = {Image.open(p).size for p in first}
    assert sizes == {(96, 96), (96, 128), (128, 96)}
    for path in first:
        caption = path.with_suffix(".txt").read_text().strip()
        colour, shape = path.stem.split("_")[1:]
        assert colour in caption and shape.rstrip("s") in caption and "background" in caption


def test_demo_images_scan_with_their_captions(tmp_path):
    paths = make_demo_images(tmp_path, n=5, size=64)
    result = scan_folder(tmp_path)
    assert [s.path for s in result.samples] == paths and not result.skipped
    assert result.samples[0].caption == paths[0].with_suffix(".txt").read_text().strip()
