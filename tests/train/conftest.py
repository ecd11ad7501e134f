"""A small workspace for training tests: the tiny model, a few images, the seed's configs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def train_ws(tmp_path_factory, tiny_model_dir) -> Path:
    """tiny-model (a link to the session model), data/, config/stage1.env, config/stage2.env."""
    from expertune.app.demo import write_configs
    from expertune.data.demo_images import make_demo_images

    work = tmp_path_factory.mktemp("train-ws")
    (work / "tiny-model").symlink_to(tiny_model_dir)
    make_demo_images(work / "data", n=8)
    write_configs(work, steps=6)
    return work
