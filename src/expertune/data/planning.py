"""From a TrainConfig to planned images: which files, which bucket, which crop, which
time ids, which cache folders. Needs no model, only the family's time-id layout and the
bucket alignment, so `expertune cache prune` can compute keys as training does.

1. `dataloader_config`: DATALOADER_CONFIG, or INSTANCE_DIR as a one-dataset config.
2. `plan_images`: scan each enabled image and eval dataset (captions, sizes, digests),
   leave out unusable, too-small and off-ratio files, choose each image's bucket and crop
   (buckets.py, images.py) and its time ids (conditioning.py); training images that are
   also in an eval dataset are held out of training.
A dataset left with no usable image is a DataError naming it and the first reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from expertune.data.buckets import SizeRule, bucket_for, too_small
from expertune.data.captions import CaptionRule
from expertune.data.conditioning import TimeIdLayout, time_ids
from expertune.data.dataset_config import (
    DataloaderConfig,
    ImageDatasetSpec,
    read_dataloader_config,
    single_folder,
    with_defaults,
)
from expertune.data.encode import PlannedImage
from expertune.data.images import plan_crop
from expertune.data.local_folder import Sample, scan_folder
from expertune.data.report import DataReport
from expertune.errors import ConfigError, DataError


def dataloader_config(cfg) -> DataloaderConfig:
    """The datasets of a TrainConfig: DATALOADER_CONFIG or INSTANCE_DIR (not both)."""
    if cfg.instance_data_dir and cfg.data_backend_config:
        raise ConfigError(
            "both INSTANCE_DIR and DATALOADER_CONFIG are set; keep one (put the folder in "
            "the dataloader config as a dataset)"
        )
    defaults = {  # issue 9: SimpleTuner's top-level dataset defaults
        "resolution_type": getattr(cfg, "resolution_type", None),
        "minimum_image_size": getattr(cfg, "minimum_image_size", None),
    }
    if cfg.data_backend_config:
        return with_defaults(read_dataloader_config(cfg.data_backend_config), defaults)
    if cfg.instance_data_dir:
        return with_defaults(single_folder(cfg.instance_data_dir, cfg.resolution), defaults)
    raise ConfigError(
        "no training data: set INSTANCE_DIR (a folder of images with .txt captions) "
        "or DATALOADER_CONFIG (a dataloader JSON)"
    )


def check_datasets(cfg) -> DataloaderConfig:
    """The dataloader config, after checking that every enabled dataset's folder exists.

    Cheap (no file is opened), for a preflight before any model is loaded.
    """
    config = dataloader_config(cfg)
    for spec in config.images:
        folder = Path(spec.instance_data_dir)
        if not folder.is_dir():
            raise DataError(
                f"dataset {spec.id!r}: folder {folder} does not exist; fix instance_data_dir "
                f"in {config.source}"
            )
    from expertune.data.conditioning_images import check_pairs

    check_pairs(cfg, config)  # issue: ControlNet pairs, by file names only
    return config


def bucket_alignment(cfg, vae) -> int:
    """`--aspect_bucket_alignment`, checked against the VAE's downsampling factor."""
    return check_alignment(
        cfg.aspect_bucket_alignment, 2 ** (len(vae.config.block_out_channels) - 1)
    )


def check_alignment(alignment: int, factor: int) -> int:
    """`alignment` if it is a multiple of the VAE's downsampling `factor`; else ConfigError."""
    if alignment % factor:
        raise ConfigError(
            f"--aspect_bucket_alignment={alignment} is not a multiple of this VAE's "
            f"downsampling factor {factor}; use a multiple such as {factor * 8}"
        )
    return alignment


@dataclass
class ImagePlan:
    """Every enabled dataset's images, planned but not encoded."""

    config: DataloaderConfig
    images: list[PlannedImage]  # training images then eval images, dataset by dataset
    report: DataReport


def plan_images(
    cfg, layout: TimeIdLayout, alignment: int, config: DataloaderConfig | None = None
) -> ImagePlan:
    """Scan and plan every enabled image and eval dataset of `cfg` (module docstring);
    `config` replaces the config's own datasets."""
    config = config or dataloader_config(cfg)
    report = DataReport()
    per_dataset = {
        spec.id: _plan_dataset(spec, cfg, config, layout, alignment, report)
        for spec in config.images
    }
    eval_digests = {p.sample.digest for s in config.evaluation for p in per_dataset[s.id]}
    images = []
    for spec in config.images:
        kept = per_dataset[spec.id]
        if spec.trains and eval_digests:
            kept = [p for p in kept if p.sample.digest not in eval_digests]
            report.held_out += len(per_dataset[spec.id]) - len(kept)
        require_images(spec, kept, report)
        images.extend(kept)
    return ImagePlan(config, images, report)


def _plan_dataset(spec, cfg, config, layout, alignment, report) -> list[PlannedImage]:
    captions = CaptionRule(
        "instanceprompt" if spec.only_instance_prompt else spec.caption_strategy,
        spec.instance_prompt,
        spec.prepend_instance_prompt,
    )
    scan = scan_folder(spec.instance_data_dir, captions)
    report.skipped.extend(scan.skipped)
    rule = SizeRule(spec.resolution or cfg.resolution, spec.resolution_type, alignment)
    latent_root = Path(config.latent_cache_dir(spec, cfg.cache_dir))
    text_root = Path(config.text_cache_dir(spec, cfg.cache_dir))
    planned, fell_back = [], set(scan.caption_fallbacks)
    cond_spec = config.conditioning_of(spec)
    if cond_spec is not None:  # ControlNet: each image with its conditioning image
        from expertune.data.conditioning_images import conditioning_samples, pair_of

        cond_root, cond_found = conditioning_samples(cond_spec)
    for sample in scan.samples:
        reason = _left_out(sample, spec)
        if reason:
            report.skipped.append((sample.path, reason))
            continue
        bucket = bucket_for(
            sample.height,
            sample.width,
            rule,
            crop=spec.crop,
            crop_aspect=spec.crop_aspect,
            aspects=spec.crop_aspect_buckets,
            seed=sample.digest,
        )
        style = spec.crop_style if spec.crop else "center"
        plan = plan_crop(sample.height, sample.width, bucket, style, seed=sample.digest)
        report.upscaled += plan.resized[0] > sample.height
        ids = time_ids(plan, layout)
        cond = None
        if cond_spec is not None:
            cond = pair_of(sample, Path(spec.instance_data_dir), cond_root, cond_found)
        planned.append(PlannedImage(sample, plan, ids, spec.id, latent_root, text_root, cond))
        if sample.path in fell_back:
            report.caption_fallbacks.append(sample.path)
    return planned


def _left_out(sample: Sample, spec: ImageDatasetSpec) -> str | None:
    """Why a readable image is not used (size or ratio limits of its dataset), or None."""
    size = f"{sample.width}x{sample.height}"
    if too_small(sample.height, sample.width, spec.minimum_image_size, spec.resolution_type):
        return (
            f"image {sample.path} ({size}) is under minimum_image_size "
            f"{spec.minimum_image_size} ({spec.resolution_type}); it is left out"
        )
    ratio = sample.width / sample.height
    low, high = spec.minimum_aspect_ratio, spec.maximum_aspect_ratio
    if (low and ratio < low) or (high and ratio > high):
        return f"image {sample.path} ({size}) is outside the dataset's aspect ratio limits"
    return None


def require_images(spec: ImageDatasetSpec, planned: list, report: DataReport) -> None:
    if planned:
        return
    folder = Path(spec.instance_data_dir)
    mine = [why for path, why in report.skipped if path == folder or folder in path.parents]
    detail = f"{len(mine)} files skipped, first: {mine[0]}" if mine else "no image files found"
    raise DataError(
        f"dataset {spec.id!r} ({folder}) has no usable images ({detail}); add images or "
        "fix the files"
    )
