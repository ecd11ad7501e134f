"""A resumable batch order over aspect buckets and datasets: batch b is a pure function of b.

An epoch is built from the training set's groups (one bucket of one dataset each):
1. each group's samples, `repeats + 1` times over, are shuffled and cut into global
   batches; the last batch is filled by wrapping around the shuffled list, so every
   batch is full and holds one bucket only, and no image is dropped;
2. each dataset's batches are shuffled together (buckets interleave);
3. datasets are interleaved by `probability`: the next batch comes from a dataset with a
   chance proportional to its probability among those with batches left (SimpleTuner's
   rule: repeats decide how much of a dataset an epoch holds, probability the mix).
Everything is drawn from `random.Random(f"{seed}:{epoch}")`, so the stream is the same
for a seed, and the checkpoint's one integer `position` (samples consumed) resumes it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol


class GroupLike(Protocol):
    """What the order needs of a group (data.training_set.Group)."""

    source: str
    items: tuple[int, ...]
    repeats: int
    probability: float

    def batches(self, global_batch: int) -> int: ...


class BatchPlan:
    """Global batches of item indices, epoch after epoch (see the module docstring)."""

    def __init__(self, groups: Sequence[GroupLike], seed: int, global_batch: int) -> None:
        if not groups or global_batch < 1:
            raise ValueError("a batch order needs at least one group and a batch size >= 1")
        self.groups = list(groups)
        self.seed = seed
        self.global_batch = global_batch
        self.batches_per_epoch = sum(g.batches(global_batch) for g in self.groups)
        self._epoch, self._batches = -1, []

    def batch(self, index: int) -> list[int]:
        """The item indices of global batch `index` of the stream (from 0)."""
        epoch, offset = divmod(index, self.batches_per_epoch)
        if epoch != self._epoch:
            self._batches, self._epoch = self._build(epoch), epoch
        return self._batches[offset]

    def epoch_of(self, index: int) -> int:
        return index // self.batches_per_epoch

    def _build(self, epoch: int) -> list[list[int]]:
        rng = random.Random(f"{self.seed}:{epoch}")
        queues: dict[str, list[list[int]]] = {}
        weights: dict[str, float] = {}
        for group in self.groups:
            pool = list(group.items) * (group.repeats + 1)
            rng.shuffle(pool)
            size = group.batches(self.global_batch) * self.global_batch
            filled = [pool[i % len(pool)] for i in range(size)]
            cut = [filled[i : i + self.global_batch] for i in range(0, size, self.global_batch)]
            queues.setdefault(group.source, []).extend(cut)
            weights[group.source] = group.probability
        for queue in queues.values():
            rng.shuffle(queue)
        order = []
        while queues:
            names = sorted(queues)
            name = rng.choices(names, weights=[weights[n] for n in names])[0]
            order.append(queues[name].pop())
            if not queues[name]:
                del queues[name]
        return order
