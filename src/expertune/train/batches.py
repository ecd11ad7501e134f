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
        """This process's micro-batch at `position`, on its device."""
        return to_device(self.host_batch(position), self.device)

    def host_batch(self, position: int) -> dict[str, torch.Tensor]:
        """This process's micro-batch at `position`, stacked in host memory."""
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
        return {key: torch.stack([item[key] for item in items]) for key in items[0]}

    def epoch_of(self, position: int) -> int:
        return self.plan.epoch_of(position // self.global_batch)

    def close(self) -> None:
        """Nothing to release: batches are assembled in this process."""


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    """The batch on `device`; a copy from pinned memory overlaps the GPU's work."""
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}


class _Walk(torch.utils.data.Dataset):
    """Micro-batch k of the walk is the source's host batch at `start + k * global_batch`."""

    def __init__(self, source: BatchSource, start: int, count: int) -> None:
        self.source, self.start, self.count = source, start, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        return self.source.host_batch(self.start + k * self.source.global_batch)


def _ignore_stop_signals(worker_id: int) -> None:
    """In a batch worker: a Ctrl-C reaches the whole process group, but only the training
    process acts on it (it finishes the step and saves); a worker that died of it would
    fail the next batch. Workers still end with their training process."""
    import signal

    from expertune.train.interrupt import SIGNALS

    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class PrefetchedBatches:
    """The same micro-batches as `source`, assembled ahead by `workers` processes.

    For a cache larger than memory: the workers read and stack the entries while the
    training process computes, and on a GPU the batches arrive in pinned memory, so the
    host-to-device copy does not block. Batch k is the source's batch at position
    `start + k * global_batch`, a pure function of the position, so a step receives
    exactly what the in-process path gives it and a resume (a new `start`) is exact.
    """

    def __init__(self, source: BatchSource, start: int, count: int, workers: int) -> None:
        self.source, self.workers, self.count = source, workers, count
        self.global_batch = source.global_batch
        self._open(start)

    def _open(self, start: int) -> None:
        from torch.utils.data import DataLoader

        self.next_position, self._end = start, start + self.count * self.global_batch
        loader = DataLoader(
            _Walk(self.source, start, self.count),
            batch_size=None,  # each item is already a micro-batch
            num_workers=self.workers,
            pin_memory=self.source.device.type == "cuda",
            generator=torch.Generator().manual_seed(0),  # leaves the global RNG untouched
            worker_init_fn=_ignore_stop_signals,
        )
        self._batches = iter(loader)

    def batch(self, position: int) -> dict[str, torch.Tensor]:
        if position != self.next_position or position >= self._end:
            self.close()  # a jump the loop never makes; start the walk again from there
            self._open(position)
        self.next_position += self.global_batch
        return to_device(next(self._batches), self.source.device)

    def epoch_of(self, position: int) -> int:
        return self.source.epoch_of(position)

    def close(self) -> None:
        """Stop the worker processes (the iterator shuts them down when released)."""
        self._batches = None


DEFAULT_WORKERS = 2  # for a cache larger than memory; --dataloader_num_workers sets it


def batch_source(
    dataset, cfg, accelerator, start: int, count: int
) -> BatchSource | PrefetchedBatches:
    """Batches in the training process when every cache entry is in memory (nothing to
    read), else from `--dataloader_num_workers` processes (default 2) that read the
    cache ahead of the step; `count` micro-batches from position `start` are planned."""
    source = BatchSource(
        dataset, cfg.seed, cfg.train_batch_size, accelerator, cfg.caption_dropout_probability
    )
    workers = cfg.dataloader_num_workers
    if workers is None:
        workers = 0 if dataset.in_memory() else DEFAULT_WORKERS
    if workers == 0 or count <= 0:
        return source
    return PrefetchedBatches(source, start, count, workers)
