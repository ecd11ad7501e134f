"""Callbacks the training loop runs after each optimizer step and at the end.

A callback gets the Trainer and decides from its config and step whether work is due.
It must leave training unchanged: no touching the trainer's generators or the
optimizer, and any global RNG it uses is saved and restored around it.
"""

from __future__ import annotations

from typing import Protocol


class TrainingCallback(Protocol):
    def on_step_end(self, trainer) -> None: ...

    def on_train_end(self, trainer) -> None: ...


def training_callbacks(cfg) -> list[TrainingCallback]:
    """The callbacks this config asks for (validation and evaluation register here)."""
    return []
