"""Caption dropout (SimpleTuner's --caption_dropout_probability): which samples of a batch
train on the empty caption.

The decision is a pure function of (seed, global batch index, slot), drawn from its own
generator, so it is the same on every process, needs no RNG state in checkpoints, and a
resumed run drops exactly the captions the uninterrupted run would have dropped.
"""

from __future__ import annotations

import torch

_STREAM = 0x0CA9_7D20  # separates this stream from the seed's other uses


def dropped(seed: int, batch_index: int, global_batch: int, probability: float) -> list[bool]:
    """For each slot of global batch `batch_index`: True where its caption is dropped."""
    if probability <= 0:
        return [False] * global_batch
    mixed = (seed * 0x9E37_79B1 + batch_index * 0x85EB_CA77 + _STREAM) % 2**63
    gen = torch.Generator().manual_seed(mixed)
    return (torch.rand(global_batch, generator=gen) < probability).tolist()
