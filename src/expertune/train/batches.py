"""Micro-batches for one process, read from the shared cache in the resumable data order."""

from __future__ import annotations

import torch

from expertune.train.order import SampleOrder


class BatchSource:
    """Turns a stream position into this process's micro-batch on its device.

    Every process walks the same global order; process k takes the k-th slice of each
    global batch, so a checkpoint's single `position` resumes all of them exactly.
    """

    def __init__(self, dataset, seed: int, batch_size: int, accelerator) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.rank = accelerator.process_index
        self.device = accelerator.device
        self.order = SampleOrder(len(dataset), seed)

    def batch(self, position: int) -> dict[str, torch.Tensor]:
        start = position + self.rank * self.batch_size
        items = [self.dataset[i] for i in self.order.take(start, self.batch_size)]
        return {
            key: torch.stack([item[key] for item in items]).to(self.device, non_blocking=True)
            for key in items[0]
        }

    def epoch_of(self, position: int) -> int:
        return self.order.epoch_of(position)
