"""SDXL micro-conditioning ("time ids") from the real resize and crop of each image.

SDXL base is told the original size, the crop's top-left corner and the target size
(Podell et al. 2023, "SDXL", §2.2); the SDXL refiner swaps the target size for an
aesthetic score (§2.5, diffusers' `requires_aesthetics_score`). Which fields, in which
order, is a fact of the model family (`models.family.Family.time_ids`), so this module
takes the family's layout and fills it from a `CropPlan`.
"""

from __future__ import annotations

from typing import Protocol

from expertune.data.images import CropPlan


class TimeIdLayout(Protocol):
    """What this module needs of a model family (models.family.Family has it)."""

    time_ids: tuple[tuple[str, int], ...]  # (field, number of values), in UNet order
    aesthetic_score: float


def time_ids(plan: CropPlan, layout: TimeIdLayout) -> tuple[float, ...]:
    """The time ids of one image cropped as `plan`, in the order `layout` lists them."""
    values = {
        "original_size": plan.original,
        "crops_coords_top_left": (plan.top, plan.left),
        "target_size": plan.target,
        "aesthetic_score": (layout.aesthetic_score,),
    }
    out: list[float] = []
    for name, width in layout.time_ids:
        field = values.get(name)
        if field is None or len(field) != width:
            raise ValueError(f"time id field {name!r} of width {width} is not known here")
        out.extend(float(v) for v in field)
    return tuple(out)
