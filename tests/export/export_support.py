"""Helpers shared by the export tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def make_expert(
    source: Path,
    folder: Path,
    *,
    band=(0, 999),
    model_type: str = "full",
    scheduler: dict | None = None,
    name: str | None = None,
) -> Path:
    """Copy the pipeline at `source` into `folder` as a finished expert of `band`.

    `scheduler` entries are written into its scheduler config (the parameterisation the
    expert was trained with, as training saves it).
    """
    shutil.copytree(source, folder)
    record = {
        "format": 1,
        "name": name or folder.name,
        "model_type": model_type,
        "band": list(band),
        "num_train_timesteps": 1000,
    }
    (folder / "expertune.json").write_text(json.dumps(record))
    if scheduler:
        path = folder / "scheduler" / "scheduler_config.json"
        config = json.loads(path.read_text())
        path.write_text(json.dumps({**config, **scheduler}))
    return folder
