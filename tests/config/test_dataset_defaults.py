"""Top-level resolution_type / minimum_image_size: defaults for datasets that do not set them."""

from __future__ import annotations

import json

from expertune.config import load_config
from expertune.data.planning import dataloader_config


def test_top_level_values_fill_only_unset_dataset_keys(write, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    datasets = [
        {"id": "a", "type": "local", "instance_data_dir": str(tmp_path / "a")},
        {
            "id": "b",
            "type": "local",
            "instance_data_dir": str(tmp_path / "b"),
            "resolution_type": "pixel",
            "minimum_image_size": 32,
        },
        {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True},
    ]
    loader = write("loader.json", json.dumps(datasets))
    data = {
        "model_name": "m",
        "data_backend_config": str(loader),
        "resolution_type": "pixel_area",
        "minimum_image_size": 0,
    }
    config = dataloader_config(load_config(write("c.json", json.dumps(data))))
    a, b = config.images
    assert (a.resolution_type, a.minimum_image_size) == ("pixel_area", 0)
    assert (b.resolution_type, b.minimum_image_size) == ("pixel", 32)


def test_without_top_level_values_datasets_keep_their_defaults(write, tmp_path):
    (tmp_path / "a").mkdir()
    cfg = load_config(None, ["--model_name=m", f"--instance_data_dir={tmp_path / 'a'}"])
    (spec,) = dataloader_config(cfg).images
    assert (spec.resolution_type, spec.minimum_image_size) == ("pixel", None)
