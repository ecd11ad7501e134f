"""Every check a user error can fail, run before any expensive work and before any write.

A typo in OUTPUT_DIR, a missing dataset or a corrupt checkpoint must fail in a second with
one line, not after the model is loaded and the cache is built, and must leave an existing
OUTPUT_DIR exactly as it was. The checks run cheapest first; only the model reference
may touch the network (a short probe, see models/load.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError, DataError
from expertune.train import checkpoint as ckpt
from expertune.train.hub import check_hub
from expertune.train.optimizers import check_optimizer
from expertune.train.outputs import EXPERT_FILE
from expertune.train.wandb_log import check_wandb


@dataclass(frozen=True)
class Checked:
    """What the checks resolved, so setup does not resolve it again."""

    model_path: Path
    resume: Path | None  # a verified checkpoint, or None for a fresh run


def preflight(cfg: TrainConfig) -> Checked:
    """Raise the one-line UserError for the first problem found; return what was resolved."""
    out = Path(cfg.output_dir)
    check_output_dir(out)
    check_dataset(cfg)
    check_optimizer(cfg)  # issue 9: package present, device able (train/optimizers.py)
    check_lycoris(cfg)  # issue 9: lycoris-lora installed, --lycoris_config readable
    check_wandb(cfg)  # issue 9: --report_to=wandb has its package
    check_hub(cfg)  # issue 9: --push_to_hub: the hub answers and the token is valid
    resume = (
        ckpt.resolve_resume(out, cfg.resume_from_checkpoint) if cfg.resume_from_checkpoint else None
    )
    check_same_expert(out, cfg)
    model_path = check_model(cfg)
    model = model_path.resolve()
    if out.resolve() == model or model in out.resolve().parents:
        raise ConfigError(
            f"OUTPUT_DIR {out} is the folder of MODEL_NAME (or inside it); training would "
            "overwrite the base model: set OUTPUT_DIR to a new folder"
        )
    return Checked(model_path=model_path, resume=resume)


def check_output_dir(out: Path) -> None:
    """OUTPUT_DIR must be a folder or not exist yet (it is created after these checks)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"OUTPUT_DIR {out} is a file; point OUTPUT_DIR at a folder")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(
            f"OUTPUT_DIR {out} cannot be created: {parent} is a file; point OUTPUT_DIR at a folder"
        )


def check_dataset(cfg: TrainConfig) -> None:
    """The image folder named by INSTANCE_DIR or DATALOADER_CONFIG exists."""
    from expertune.train.setup import dataset_folder

    folder = dataset_folder(cfg)
    if not folder.is_dir():
        raise DataError(f"dataset folder {folder} does not exist; check the instance_data_dir")


def check_same_expert(out: Path, cfg: TrainConfig) -> None:
    """An OUTPUT_DIR holding another expert (another band) is not overwritten.

    The seed's step two is "copy the config and change OUTPUT_DIR"; forgetting the change
    would replace stage one's finished expert with stage two.
    """
    try:
        record = json.loads((out / EXPERT_FILE).read_text())
        theirs = tuple(record["band"])
        timesteps = int(record.get("num_train_timesteps", 1000))
    except (OSError, ValueError, KeyError, TypeError):
        return  # no readable record: nothing expertune trained is there
    ours = cfg.expert_band(timesteps)
    if theirs != ours:
        role = record.get("role", "another")
        raise ConfigError(
            f"OUTPUT_DIR {out} already holds the {role} expert (timesteps "
            f"{theirs[0]}..{theirs[1]}), but this run trains {ours[0]}..{ours[1]}; set a new "
            "OUTPUT_DIR for this expert"
        )


def check_model(cfg: TrainConfig) -> Path:
    """MODEL_NAME resolves to a local diffusers folder of the configured family."""
    from expertune.errors import ModelReferenceError
    from expertune.models.family import detect_family
    from expertune.models.load import read_model_index, resolve_model_path

    name = cfg.pretrained_model_name_or_path
    path = resolve_model_path(name, allow_pickle=cfg.allow_pickle_weights)
    found = detect_family(read_model_index(path), where=f"MODEL_NAME {name!r} (model_index.json)")
    if found != cfg.model_family:
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} is a model of family {found!r}, but MODEL_FAMILY is "
            f"{cfg.model_family!r}; point MODEL_NAME at a {cfg.model_family} model"
        )
    return path


def check_lycoris(cfg: TrainConfig) -> None:
    """--lora_type=lycoris: the package is installed and the JSON reads."""
    if getattr(cfg, "lora_type", "standard") != "lycoris":
        return
    from expertune.models.lycoris import check_lycoris_installed, read_lycoris_config

    check_lycoris_installed()
    read_lycoris_config(cfg.lycoris_config)
