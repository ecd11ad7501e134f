"""A resumable data order: one seeded permutation per epoch, read as a flat stream.

The position in the stream (samples consumed) is one integer, so a checkpoint records
it exactly and a resumed run sees the same samples in the same order.
"""

from __future__ import annotations

import torch


class SampleOrder:
    """Indices of a dataset of `n` items, epoch after epoch, each epoch a fresh permutation."""

    def __init__(self, n: int, seed: int) -> None:
        if n <= 0:
            raise ValueError("an empty dataset has no order")
        self.n = n
        self.seed = seed
        self._epoch = -1
        self._perm: list[int] = []

    def _permutation(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g).tolist()
            self._epoch = epoch
        return self._perm

    def take(self, position: int, count: int) -> list[int]:
        """The `count` indices starting at stream `position` (may cross an epoch)."""
        out = []
        for p in range(position, position + count):
            out.append(self._permutation(p // self.n)[p % self.n])
        return out

    def epoch_of(self, position: int) -> int:
        return position // self.n
