"""Setup stages of a training run: accelerator, model, data, optimizer, output dir.

Each returns plain objects; the Trainer in loop.py wires them together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError

log = logging.getLogger(__name__)


def setup_output_dir(output_dir: Path) -> None:
    """Create OUTPUT_DIR; a path that exists as a file is a user error."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"OUTPUT_DIR {output_dir} is a file; point OUTPUT_DIR at a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"OUTPUT_DIR {output_dir} cannot be created ({exc.strerror})") from exc


def setup_accelerator(cfg: TrainConfig, output_dir: Path):
    """An accelerate Accelerator for this run (devices, mixed precision, processes)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    return Accelerator(
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(output_dir)),
    )


def setup_model(cfg: TrainConfig):
    """Load the family's parts; return (components, unet, trainable params by name)."""
    from expertune.models.load import load_components

    components = load_components(cfg.pretrained_model_name_or_path, family=cfg.model_family)
    unet = components.unet
    for module in (components.vae, components.text_encoder, components.text_encoder_2):
        if module is not None:
            module.requires_grad_(False).eval()
    if cfg.model_type == "lora":
        from expertune.models.lora import add_lora

        unet.requires_grad_(False)
        add_lora(unet, rank=cfg.lora_rank, alpha=cfg.lora_alpha or cfg.lora_rank)
    else:
        unet.requires_grad_(True)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    trainable = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    return components, unet, trainable


@dataclass
class TrainData:
    """The cached training set and what building it cost."""

    dataset: torch.utils.data.Dataset
    stats: object  # data.encode.EncodeStats
    skipped: list
    fingerprints: dict  # {"vae": ..., "text": ...}: which encoders made the cache entries


def dataset_folder(cfg: TrainConfig) -> Path:
    """The image folder: INSTANCE_DIR, or the first local image dataset of DATALOADER_CONFIG."""
    if cfg.instance_data_dir:
        return Path(cfg.instance_data_dir)
    if cfg.data_backend_config:
        from expertune.data.backend_config import first_image_folder

        return first_image_folder(Path(cfg.data_backend_config))
    raise ConfigError(
        "no training data: set INSTANCE_DIR (a folder of images with .txt captions) "
        "or DATALOADER_CONFIG (a dataloader JSON)"
    )


def setup_data(cfg: TrainConfig, components, accelerator) -> TrainData:
    """Scan the dataset and fill the shared cache (no-op for entries already cached)."""
    from expertune.data.cache import Cache
    from expertune.data.encode import CachedDataset, build_cache, text_encoders_fingerprint
    from expertune.data.local_folder import scan_folder
    from expertune.models.load import fingerprint

    scan = scan_folder(dataset_folder(cfg), cfg.resolution)
    cache = Cache(Path(cfg.cache_dir))
    c = components
    fingerprints = {
        "vae": fingerprint(c.vae),
        "text": text_encoders_fingerprint(
            fingerprint(c.text_encoder) if c.text_encoder is not None else None,
            fingerprint(c.text_encoder_2),
            c.tokenizer,
            c.tokenizer_2,
        ),
    }
    with accelerator.main_process_first():
        encoded = build_cache(
            scan.samples,
            vae=components.vae,
            text_encoder=components.text_encoder,
            text_encoder_2=components.text_encoder_2,
            tokenizer=components.tokenizer,
            tokenizer_2=components.tokenizer_2,
            cache=cache,
            resolution=cfg.resolution,
            vae_fingerprint=fingerprints["vae"],
            text_fingerprint=fingerprints["text"],
            progress=accelerator.is_local_main_process,
        )
    if scan.skipped:
        shown = ", ".join(f"{p} ({why})" for p, why in scan.skipped[:3])
        log.warning("skipped %d unusable files: %s", len(scan.skipped), shown)
    return TrainData(CachedDataset(encoded, cache), encoded.stats, scan.skipped, fingerprints)


def setup_optimizer(cfg: TrainConfig, trainable: dict, max_steps: int):
    """AdamW over the trainable parameters and the configured lr schedule."""
    from diffusers.optimization import get_scheduler

    optimizer = torch.optim.AdamW(
        list(trainable.values()),
        lr=cfg.learning_rate,
        betas=(cfg.adam_beta1, cfg.adam_beta2),
        weight_decay=cfg.adam_weight_decay,
        eps=cfg.adam_epsilon,
    )
    lr_scheduler = get_scheduler(
        cfg.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=cfg.lr_warmup_steps,
        num_training_steps=max_steps,
    )
    return optimizer, lr_scheduler
