"""Images and captions in, cached VAE latents and text embeddings out.

`training_set.prepare_data` turns a dataloader config (or INSTANCE_DIR) into cached,
bucketed samples. On the way: `dataset_config` reads the JSON; `planning` scans the
folders (`local_folder`, `captions`) and decides each image's bucket, crop and time ids
(`buckets`, `images`, `conditioning`); `encode` fills the content-addressed `cache`
(`keys` say what an entry depends on, `fill` computes missing entries once between
builders); `cached_dataset` serves the samples; `report` says once what was left out.
This package knows nothing about training. Names load on first use (PEP 562), so
importing a light module such as `data.cache_commands` does not import torch.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Cache": "cache",
    "Caches": "cache",
    "cache_key": "cache",
    "CaptionRule": "captions",
    "caption_for": "captions",
    "DataloaderConfig": "dataset_config",
    "read_dataloader_config": "dataset_config",
    "make_demo_images": "demo_images",
    "CachedDataset": "cached_dataset",
    "EncodedDataset": "encode",
    "EncodedItem": "encode",
    "Encoders": "encode",
    "EncodeStats": "encode",
    "PlannedImage": "encode",
    "build_cache": "encode",
    "encode_latents": "encode",
    "encode_prompts": "encode",
    "latent_key": "keys",
    "text_key": "keys",
    "CropPlan": "images",
    "Prepared": "images",
    "load_image": "images",
    "plan_crop": "images",
    "prepare": "images",
    "Sample": "local_folder",
    "ScanResult": "local_folder",
    "scan_folder": "local_folder",
    "DataReport": "report",
    "PreparedData": "training_set",
    "TrainingSet": "training_set",
    "eval_samples": "training_set",
    "prepare_data": "training_set",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
