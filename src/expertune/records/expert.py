"""The expert record (`expertune.json`): what an expert is, named in one place.

Its role is derived from the band plan and the expert's place in it: one band is a
`single` model; of two, the high-noise band is the `base` (stage one) and the low-noise
band the `refiner` (stage two); of more, `expert-i` counting from the low-noise end.
"""

from __future__ import annotations


def role_of(num_bands: int, index: int) -> str:
    """The role of band `index` (ascending timesteps) in a plan of `num_bands` bands."""
    if num_bands == 1:
        return "single"
    if num_bands == 2:
        return "base" if index == 1 else "refiner"
    return f"expert-{index}"


def expert_role(cfg) -> str:
    """'base' (stage one, high noise), 'refiner' (stage two, low noise) or 'single'."""
    plan = cfg.band_plan()
    lo, _ = cfg.expert_band()
    return role_of(len(plan), plan.band_of(lo))


def read_record(folder) -> dict | None:
    """The expertune.json of an expert folder (format 1 or 2), or None when there is none
    or it is unreadable (a folder expertune did not finish)."""
    import json
    from pathlib import Path

    from expertune.records.layout import EXPERT_FILE

    try:
        record = json.loads((Path(folder) / EXPERT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
