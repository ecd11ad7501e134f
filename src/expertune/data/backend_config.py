"""The SimpleTuner-shaped dataloader config (a JSON list of datasets), as far as the
foundation needs it: the first enabled local image dataset's folder."""

from __future__ import annotations

import json
from pathlib import Path

from expertune.errors import ConfigError


def read_backends(path: Path) -> list[dict]:
    """Parse the JSON list; a missing file or malformed JSON names the file and the fix."""
    if not path.is_file():
        raise ConfigError(f"DATALOADER_CONFIG {path} does not exist; point it at a JSON file")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"DATALOADER_CONFIG {path} is not valid JSON (line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg})"
        ) from exc
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ConfigError(f"DATALOADER_CONFIG {path} must be a JSON list of dataset objects")
    return data


def first_image_folder(path: Path) -> Path:
    """`instance_data_dir` of the first enabled local image dataset in the config."""
    for entry in read_backends(path):
        if entry.get("disabled"):
            continue
        if entry.get("dataset_type", "image") == "image" and entry.get("type", "local") == "local":
            folder = entry.get("instance_data_dir")
            if not folder:
                raise ConfigError(
                    f"DATALOADER_CONFIG {path}: dataset {entry.get('id', '?')!r} has no "
                    "instance_data_dir; add the image folder"
                )
            return Path(folder)
    raise ConfigError(f"DATALOADER_CONFIG {path} has no enabled local image dataset")
