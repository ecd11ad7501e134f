"""Aspect-ratio buckets: the training size (height, width) of each image.

SDXL is trained on many sizes of about one area, each batch from one size (Podell et al.
2023, "SDXL", §2.3, after NovelAI's aspect-ratio bucketing). A dataset's `resolution`,
`resolution_type`, `crop` and `crop_aspect` decide the size of each image here; every side
is a multiple of the alignment (SimpleTuner's `--aspect_bucket_alignment`, 64 by default).

- resolution_type "pixel": the shorter side is `resolution` pixels;
  "pixel_area": the area is `resolution`² pixels; "area": `resolution` megapixels.
- crop false or crop_aspect "preserve": the image's own aspect ratio;
  "square": 1:1; "closest": the entry of `crop_aspect_buckets` nearest the image's ratio
  (on a log scale); "random": an entry drawn by weight, seeded by the image's bytes, so
  an image keeps its bucket in every job and run (its latents are cached once).
Aspect ratios are width / height, as in SimpleTuner.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from expertune.data.dataset_config import AspectWeight

# Used for crop_aspect closest/random when a dataset gives no crop_aspect_buckets:
# SDXL's common training ratios, portrait to landscape.
DEFAULT_ASPECTS = (0.5, 0.57, 0.68, 0.78, 1.0, 1.29, 1.46, 1.75, 2.0)
MEGAPIXEL = 1_000_000


@dataclass(frozen=True)
class SizeRule:
    """How big a bucket is: resolution in the unit of `resolution_type`, sides aligned."""

    resolution: float
    resolution_type: str  # pixel | pixel_area | area
    alignment: int

    def size(self, aspect: float) -> tuple[int, int]:
        """(height, width) of the bucket with ratio `aspect` (width / height)."""
        if self.resolution_type == "pixel":
            short = float(self.resolution)
            height, width = (short, short * aspect) if aspect >= 1 else (short / aspect, short)
        else:
            area = self.area_pixels
            height = math.sqrt(area / aspect)
            width = height * aspect
        return self._align(height), self._align(width)

    @property
    def area_pixels(self) -> float:
        if self.resolution_type == "area":
            return self.resolution * MEGAPIXEL
        return float(self.resolution) ** 2

    def _align(self, side: float) -> int:
        return max(self.alignment, round(side / self.alignment) * self.alignment)


def too_small(height: int, width: int, minimum: float | None, resolution_type: str) -> bool:
    """Whether an image is under `minimum_image_size`, in the unit of `resolution_type`:
    shorter side in pixels ("pixel"), side of the equal-area square ("pixel_area"), or
    megapixels ("area")."""
    if not minimum:
        return False
    if resolution_type == "pixel":
        return min(height, width) < minimum
    if resolution_type == "pixel_area":
        return height * width < minimum * minimum
    return height * width / MEGAPIXEL < minimum


def bucket_for(
    height: int,
    width: int,
    rule: SizeRule,
    *,
    crop: bool,
    crop_aspect: str,
    aspects: tuple[float | AspectWeight, ...] | None,
    seed: str,
) -> tuple[int, int]:
    """The (height, width) an image of (height, width) is trained at (module docstring).

    `seed` (the image's content digest) makes "random" repeatable per image.
    """
    own = width / height
    if not crop or crop_aspect == "preserve":
        return rule.size(own)
    if crop_aspect == "square":
        return rule.size(1.0)
    ratios = [a.aspect if isinstance(a, AspectWeight) else float(a) for a in aspects or ()]
    weights = [a.weight if isinstance(a, AspectWeight) else 1.0 for a in aspects or ()]
    if not ratios:
        ratios, weights = list(DEFAULT_ASPECTS), [1.0] * len(DEFAULT_ASPECTS)
    if crop_aspect == "closest":
        chosen = min(ratios, key=lambda r: abs(math.log(r / own)))
    else:
        chosen = random.Random(f"bucket:{seed}").choices(ratios, weights=weights)[0]
    return rule.size(chosen)
