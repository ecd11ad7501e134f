"""Every random number generator a training run draws from, saved and restored around work
that must not change training (validation, eval loss, reports)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run the block, then put Python's, numpy's and torch's (CPU and CUDA) RNG state back.

    The trainer's own generators are separate objects that evaluation never touches; this
    guards against library code (pipelines, schedulers, dropout) drawing from global state.
    """
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
