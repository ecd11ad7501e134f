"""Bad files never stop an epoch: a folder seeded with every kind of bad file trains, the
scan ends with one summary line, and run_summary.json names every file left out."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from expertune.cli import main
from expertune.data.demo_images import make_demo_images

pytestmark = pytest.mark.slow
BAD = {"zero.png", "truncated.png", "corrupt.jpg", "notes.jpg", "tiny.png", "badcaption.png"}


@pytest.fixture
def messy_run(tmp_path, tiny_model_dir):
    data = tmp_path / "data"
    make_demo_images(data, n=4, size=96)
    (data / "zero.png").write_bytes(b"")
    noise = np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(noise).save(data / "whole.png")
    whole = (data / "whole.png").read_bytes()
    (data / "whole.png").unlink()
    (data / "truncated.png").write_bytes(whole[: len(whole) // 2])  # header fine, data cut
    (data / "corrupt.jpg").write_bytes(b"\xff\xd8\xff" + bytes(200))
    (data / "notes.jpg").write_text("this is not an image")
    Image.new("RGB", (16, 16), (9, 9, 9)).save(data / "tiny.png")  # under minimum_image_size
    Image.new("RGB", (96, 96), (200, 9, 9)).save(data / "nocaption.png")  # falls back
    Image.new("RGB", (96, 96), (9, 200, 9)).save(data / "badcaption.png")
    (data / "badcaption.txt").write_bytes(b"\xff\xfe\xfa not utf-8")
    dataloader = tmp_path / "multidatabackend.json"
    dataset = {
        "id": "messy",
        "instance_data_dir": str(data),
        "caption_strategy": "textfile",
        "minimum_image_size": 32,
        "crop": True,
        "crop_style": "center",
    }
    dataloader.write_text(json.dumps([dataset]))
    env = tmp_path / "config.env"
    env.write_text(
        f'MODEL_NAME="{tiny_model_dir}"\nDATALOADER_CONFIG="{dataloader}"\n'
        f'CACHE_DIR="{tmp_path / "cache"}"\nOUTPUT_DIR="{tmp_path / "out"}"\n'
        "RESOLUTION=64\nMAX_NUM_STEPS=3\nTRAIN_BATCH_SIZE=2\nREPORT_TO=none\n"
    )
    return env, tmp_path / "out"


def test_training_runs_and_the_summary_names_every_bad_file(messy_run, caplog):
    env, out = messy_run
    with caplog.at_level(logging.INFO):
        assert main(["train", "--config", str(env)]) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("data: skipped")]
    assert len(lines) == 1, lines  # one line at the end of the scan
    assert "skipped 6 unusable files" in lines[0] and "and 3 more" in lines[0]
    assert (
        "1 image without a caption file uses its file name" in lines[0]
        and "nocaption.png" in lines[0]
    )
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["steps"] == 3
    skipped = {
        entry["path"].rsplit("/", 1)[-1]: entry["reason"] for entry in summary["skipped_files"]
    }
    assert set(skipped) == BAD
    assert "empty file" in skipped["zero.png"] and "minimum_image_size" in skipped["tiny.png"]
    assert "truncated" in skipped["truncated.png"] and "badcaption.txt" in skipped["badcaption.png"]
