"""Micro-batches for one process, read from the shared cache in the resumable batch order."""

from __future__ import annotations

import torch

from expertune.errors import ConfigError
from expertune.train.caption_dropout import dropped
from expertune.train.order import BatchPlan


class _OneGroup:
    """All of a dataset without groups (every sample one shape) as a single group."""

    source, repeats, probability = "all", 0, 1.0

    def __init__(self, n: int) -> None:
        self.items = tuple(range(n))

    def batches(self, global_batch: int) -> int:
        return -(-len(self.items) // global_batch)


class BatchSource:
    """Turns a stream position into this process's micro-batch on its device.

    Every process walks the same global batches (one bucket each); process k takes the
    k-th slice, so a checkpoint's single `position` resumes all of them exactly.
    """

    def __init__(
        self, dataset, seed: int, batch_size: int, accelerator, caption_dropout: float = 0.0
    ) -> None:
        self.dataset = dataset
        self.seed, self.caption_dropout = seed, caption_dropout
        self.batch_size = batch_size
        self.rank = accelerator.process_index
        self.device = accelerator.device
        self.global_batch = batch_size * accelerator.num_processes
        groups = getattr(dataset, "groups", None) or [_OneGroup(len(dataset))]
        self.plan = BatchPlan(groups, seed, self.global_batch)

    def batch(self, position: int) -> dict[str, torch.Tensor]:
        index, offset = divmod(position, self.global_batch)
        if offset:
            raise ConfigError(
                f"data position {position} is not a whole number of batches of "
                f"{self.global_batch}; resume with the TRAIN_BATCH_SIZE and number of "
                "processes that wrote the checkpoint"
            )
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        drop = dropped(self.seed, index, self.global_batch, self.caption_dropout)[mine]
        items = [
            self.dataset.without_caption(i) if d else self.dataset[i]
            for i, d in zip(self.plan.batch(index)[mine], drop, strict=True)
        ]
        return {
            key: torch.stack([item[key] for item in items]).to(self.device, non_blocking=True)
            for key in items[0]
        }

    def epoch_of(self, position: int) -> int:
        return self.plan.epoch_of(position // self.global_batch)
