"""Whether a checkpoint can be resumed by this run's config, decided before anything is written.

A checkpoint records what its weights were trained for (band, parameterisation) and the
data position it stopped at. Resuming it with another band or parameterisation would
silently publish an expert of the new band from weights trained on the old one; a batch
size the position does not divide, or a step past `--max_train_steps`, cannot continue
it. Each is refused here in one line, before OUTPUT_DIR (metrics.jsonl) is touched.
"""

from __future__ import annotations

import os
from pathlib import Path

from expertune.errors import ConfigError
from expertune.schedule.noise import Parameterisation
from expertune.train.checkpoint import LoopState


def world_size() -> int:
    """The number of training processes (accelerate launch sets WORLD_SIZE; 1 without it)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def check_resume_fits(path: Path, cfg, num_train_timesteps: int) -> LoopState:
    """The checkpoint's LoopState if this config can continue it; else a ConfigError."""
    state = LoopState.from_json((path / "state.json").read_text())
    start_fresh = "or set a new OUTPUT_DIR (or drop --resume_from_checkpoint) to start fresh"
    band = list(cfg.expert_band(num_train_timesteps))
    if state.band and list(state.band) != band:
        raise ConfigError(
            f"--resume_from_checkpoint: {path.name} was trained on timesteps "
            f"{state.band[0]}..{state.band[1]}, but this config trains {band[0]}..{band[1]} "
            "(--refiner_training_strength or --refiner_training_invert_schedule changed); "
            f"resume with the settings that wrote it, {start_fresh}"
        )
    ours = Parameterisation.from_config(cfg).as_dict()
    if state.parameterisation and state.parameterisation != ours:
        changed = ", ".join(
            f"{key} {state.parameterisation.get(key)} -> {value}"
            for key, value in ours.items()
            if state.parameterisation.get(key) != value
        )
        raise ConfigError(
            f"--resume_from_checkpoint: {path.name} was trained with another "
            f"parameterisation ({changed}); resume with the settings that wrote it, "
            f"{start_fresh}"
        )
    global_batch = cfg.train_batch_size * world_size()
    if state.position % global_batch:
        raise ConfigError(
            f"--resume_from_checkpoint: {path.name} stopped at data position "
            f"{state.position}, not a whole number of batches of {global_batch}; resume "
            "with the TRAIN_BATCH_SIZE and number of processes that wrote it"
            + (f" (a global batch of {state.global_batch})" if state.global_batch else "")
        )
    if cfg.max_train_steps and state.step > cfg.max_train_steps:
        raise ConfigError(
            f"--resume_from_checkpoint: {path.name} is at step {state.step}, past "
            f"--max_train_steps={cfg.max_train_steps}; raise --max_train_steps or resume "
            "an earlier checkpoint"
        )
    return state
