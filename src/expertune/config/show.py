"""A TrainConfig as text: JSON for tools, an aligned listing for people."""

from __future__ import annotations

import json

from expertune.config.schema import SDXL_TRAIN_TIMESTEPS, TrainConfig


def show_config(cfg: TrainConfig, as_json: bool = False) -> str:
    """Every field plus ``band`` (this expert's [lowest, highest] training timestep).

    The listing marks where each value the user set came from; the rest are defaults.
    """
    lo, hi = cfg.expert_band()
    if as_json:
        return json.dumps({**cfg.as_flags(), "band": [lo, hi]}, indent=2)
    rows = {"band": f"[{lo}, {hi}]"} | {k: _text(v) for k, v in cfg.as_flags().items()}
    sources = cfg.sources()
    sources["band"] = f"training timesteps of this expert, of T={SDXL_TRAIN_TIMESTEPS}"
    key_width = max(map(len, rows))
    value_width = min(40, max(map(len, rows.values())))
    lines = []
    for key, value in rows.items():
        line = f"{key:<{key_width}} = {value}"
        if key in sources:
            line = f"{line:<{key_width + 3 + value_width}}  # {sources[key]}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def _text(value: object) -> str:
    if value is None:
        return "(not set)"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
