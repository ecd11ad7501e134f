"""Images and captions in, cached VAE latents and text embeddings out.

`scan_folder` finds captioned images, `build_cache` fills a content-addressed `Cache`
shared by every expert's job, and `CachedDataset` serves training batches from it.
This package knows nothing about training.
"""

from expertune.data.cache import Cache, cache_key
from expertune.data.captions import caption_for
from expertune.data.demo_images import make_demo_images
from expertune.data.encode import (
    CachedDataset,
    EncodedDataset,
    EncodedItem,
    EncodeStats,
    build_cache,
    encode_latents,
    encode_prompts,
    latent_key,
    text_key,
)
from expertune.data.images import CropPlan, Prepared, load_image, plan_crop, prepare
from expertune.data.local_folder import Sample, ScanResult, scan_folder

__all__ = [
    "Cache",
    "CachedDataset",
    "CropPlan",
    "EncodeStats",
    "EncodedDataset",
    "EncodedItem",
    "Prepared",
    "Sample",
    "ScanResult",
    "build_cache",
    "cache_key",
    "caption_for",
    "encode_latents",
    "encode_prompts",
    "latent_key",
    "load_image",
    "make_demo_images",
    "plan_crop",
    "prepare",
    "scan_folder",
    "text_key",
]
