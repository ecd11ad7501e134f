"""Every check a user error can fail, run before any expensive work and before any write.

A typo in OUTPUT_DIR, a missing dataset or a corrupt checkpoint must fail in a second with
one line, not after the model is loaded and the cache is built, and must leave an existing
OUTPUT_DIR exactly as it was. The checks run cheapest first; only the model reference
may touch the network (a short probe, see models/load.py).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError
from expertune.models.quantize import check_quanto_installed
from expertune.train import checkpoint as ckpt
from expertune.train.hub import check_hub
from expertune.train.optimizers import check_optimizer
from expertune.train.outputs import EXPERT_FILE
from expertune.train.resume_fit import check_resume_fits
from expertune.train.setup import check_precision
from expertune.train.wandb_log import check_wandb


@dataclass(frozen=True)
class Checked:
    """What the checks resolved, so setup does not resolve it again."""

    model_path: Path
    resume: Path | None  # a verified checkpoint, or None for a fresh run
    parent: object = None  # models.parent.Parent with --init_from, else None


def preflight(cfg: TrainConfig) -> Checked:
    """Raise the one-line UserError for the first problem found; return what was resolved."""
    out = Path(cfg.output_dir)
    check_output_set(cfg)
    check_output_dir(out)
    check_dataset(cfg)
    check_caches(cfg)
    check_optimizer(cfg)  # issue 9: package present, device able (train/optimizers.py)
    check_precision(cfg)  # --mixed_precision=fp16 needs a GPU (train/setup.py)
    check_lycoris(cfg)  # issue 9: lycoris-lora installed, --lycoris_config readable
    check_controlnet_path(cfg)  # --controlnet_model_name_or_path is a diffusers ControlNet
    check_quanto_installed(cfg.base_model_precision)  # issue 9: --base_model_precision
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
    check_buckets(cfg, model_path)
    parent = check_init_from(cfg, model_path)
    if resume is not None:
        from expertune.models.load import read_scheduler_config

        timesteps = read_scheduler_config(model_path, cfg.pretrained_model_name_or_path)
        check_resume_fits(resume, cfg, int(timesteps.get("num_train_timesteps", 1000)))
    return Checked(model_path=model_path, resume=resume, parent=parent)


def check_init_from(cfg: TrainConfig, model_path: Path):
    """--init_from names a parent whose UNet has exactly MODEL_NAME's tensors (headers only)."""
    if not cfg.init_from:
        return None
    from expertune.models.parent import check_parent

    unet = model_path / "unet"
    readable = unet.is_dir() and any(unet.glob("*.safetensors"))
    return check_parent(cfg.init_from, unet if readable else None)


def check_output_set(cfg: TrainConfig) -> None:
    """OUTPUT_DIR was given: an empty or missing one would silently write to ./output."""
    if cfg.sources() and "output_dir" not in cfg.sources():
        raise ConfigError(
            "OUTPUT_DIR is not set (or is empty); set OUTPUT_DIR (--output_dir) to the "
            "folder this expert is trained into"
        )


def check_output_dir(out: Path) -> None:
    """OUTPUT_DIR must be a folder or not exist yet (it is created after these checks)."""
    if out.is_symlink() and not out.exists():
        raise ConfigError(
            f"OUTPUT_DIR {out} is a link to {os.readlink(out)}, which does not exist; "
            "create that folder or point OUTPUT_DIR at a folder"
        )
    if out.exists() and not out.is_dir():
        raise ConfigError(f"OUTPUT_DIR {out} is a file; point OUTPUT_DIR at a folder")
    parent = next((p for p in [out, *out.parents] if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(
            f"OUTPUT_DIR {out} cannot be created: {parent} is a file; point OUTPUT_DIR at a folder"
        )
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(
            f"OUTPUT_DIR {out} cannot be written: {parent} is not writable; make it writable "
            "or point OUTPUT_DIR elsewhere"
        )


def check_dataset(cfg: TrainConfig) -> None:
    """Every image folder of INSTANCE_DIR or DATALOADER_CONFIG exists, and OUTPUT_DIR is
    not one of them (or inside one): the next scan would train on its validation images."""
    from expertune.data.planning import check_datasets

    out = Path(cfg.output_dir).resolve()
    config = check_datasets(cfg)
    for spec in (*config.images, *config.evaluation):
        folder = Path(spec.instance_data_dir).resolve()
        if out == folder or folder in out.parents:
            raise ConfigError(
                f"OUTPUT_DIR {cfg.output_dir} is (or is inside) the image folder of dataset "
                f"{spec.id!r} ({spec.instance_data_dir}); the next run would train on its "
                "checkpoints' images: set OUTPUT_DIR outside the data folders"
            )


def check_caches(cfg: TrainConfig) -> None:
    """Every cache folder can be created, or holds entries, or can be written.

    A read-only folder full of entries is fine (a shared warm cache); an empty read-only
    one, or one under a file, would fail at the first entry, after the model loaded.
    """
    from expertune.data.cache_commands import cache_roots

    for root in cache_roots(cfg):
        parent = next((p for p in [root, *root.parents] if p.exists()), None)
        if parent is None:
            continue
        if not parent.is_dir():
            raise ConfigError(
                f"cache folder {root} cannot be created: {parent} is a file; point CACHE_DIR "
                "(or the dataset's cache_dir_vae / text_embeds cache_dir) at a folder"
            )
        if os.access(parent, os.W_OK | os.X_OK):
            continue
        if parent == root and any(root.glob("*/??/*.safetensors")):
            continue  # a read-only warm cache: read, never written
        state = "is empty and" if parent == root else f"cannot be created: {parent} is"
        raise ConfigError(
            f"cache folder {root} {state} not writable; make it writable or point CACHE_DIR "
            "(or the dataset's cache_dir_vae / text_embeds cache_dir) at a writable folder"
        )


def check_buckets(cfg: TrainConfig, model_path: Path) -> None:
    """`--aspect_bucket_alignment` fits the VAE, and no pixel resolution is silently raised.

    Bucket sides are rounded to the alignment, so RESOLUTION=96 with the default 64 would
    train at 128 without a word.
    """
    from expertune.data.planning import check_alignment, dataloader_config
    from expertune.models.structure import vae_downsampling

    factor = vae_downsampling(model_path, cfg.pretrained_model_name_or_path)
    alignment = check_alignment(cfg.aspect_bucket_alignment, factor)
    config = dataloader_config(cfg)
    for spec in (*config.images, *config.evaluation):
        resolution = spec.resolution or cfg.resolution
        if spec.resolution_type != "pixel" or resolution % alignment == 0:
            continue
        trained = max(alignment, round(resolution / alignment) * alignment)
        own = spec.resolution and config.source != "INSTANCE_DIR"
        where = f"dataset {spec.id!r} resolution" if own else "RESOLUTION"
        raise ConfigError(
            f"{where} {resolution:g} is not a multiple of --aspect_bucket_alignment="
            f"{alignment}, so its images would train at {trained:g} pixels; use a multiple "
            f"of {alignment} or set --aspect_bucket_alignment to a divisor of {resolution:g} "
            f"(a multiple of {factor})"
        )


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
    """MODEL_NAME resolves to a local diffusers folder of the configured family, whose
    UNet fits that family and whose weights are safetensors (or trusted pickles)."""
    from expertune.errors import ModelReferenceError
    from expertune.models.family import detect_family, get_family
    from expertune.models.load import resolve_model_path, weights_variant
    from expertune.models.structure import check_unet_config, read_json_object

    name = cfg.pretrained_model_name_or_path
    path = resolve_model_path(name, allow_pickle=cfg.allow_pickle_weights)
    where = f"MODEL_NAME {name!r} (model_index.json)"
    index = read_json_object(path / "model_index.json", f"MODEL_NAME {name!r}")
    found = detect_family(index, where=where)
    if found != cfg.model_family:
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} is a model of family {found!r}, but MODEL_FAMILY is "
            f"{cfg.model_family!r}; point MODEL_NAME at a {cfg.model_family} model"
        )
    for part in get_family(found).weight_folders:
        weights_variant(path / part, name, cfg.allow_pickle_weights)
    check_unet_config(path, found, name)
    return path


def check_controlnet_path(cfg: TrainConfig) -> None:
    """--controlnet_model_name_or_path is a local diffusers ControlNet folder (config.json)."""
    path = getattr(cfg, "controlnet_model_name_or_path", None)
    if not path:
        return
    from expertune.models.structure import read_json_object

    config = Path(path) / "config.json"
    if not config.is_file():
        raise ConfigError(
            f"--controlnet_model_name_or_path {path} is not a diffusers ControlNet folder (no "
            "config.json); point it at a folder saved by ControlNetModel.save_pretrained"
        )
    found = read_json_object(config, f"--controlnet_model_name_or_path {path}")
    if found.get("_class_name") not in ("ControlNetModel", None):
        raise ConfigError(
            f"--controlnet_model_name_or_path {path} holds a {found.get('_class_name')}, not a "
            "ControlNetModel; point it at a diffusers ControlNet folder"
        )


def check_lycoris(cfg: TrainConfig) -> None:
    """--lora_type=lycoris: the package is installed and the JSON reads."""
    if getattr(cfg, "lora_type", "standard") != "lycoris":
        return
    from expertune.models.lycoris import check_lycoris_installed, read_lycoris_config

    check_lycoris_installed()
    read_lycoris_config(cfg.lycoris_config)
