"""The seam between the training loop and whatever watches it (validation, eval loss).

The loop receives its callbacks; it never builds them, so train/ imports nothing of
evaluate/. A callback gets the Trainer after each optimizer step and at the end, and
decides from the config and `trainer.state.step` whether work is due (one modulo when
nothing is, so the hot path gains nothing). It must leave training unchanged: no
touching the trainer's generators or the optimizer; any global RNG it uses is saved and
restored around it.

What a callback may read of the trainer: `cfg`, `output_dir`, `accelerator`, `unet`,
`components`, `param`, `band`, `num_train_timesteps`, `noise_scheduler`, `data`, `state`.
"""

from __future__ import annotations

from typing import Protocol


class TrainingCallback(Protocol):
    def on_step_end(self, trainer) -> None: ...

    def on_train_end(self, trainer) -> None: ...
