"""Batches from worker processes (--dataloader_num_workers, and the default for a cache
larger than memory): the same micro-batches as the in-process path, so the same weights
and an exact resume, with the cache files read by the workers, not the training process."""

from __future__ import annotations

import pytest
import torch
from train_support import train_args, unet_weights

import expertune.data.cache as cache_module
from expertune.cli import main
from expertune.config import load_config
from expertune.train.batches import BatchSource, PrefetchedBatches

DROPOUT = "--caption_dropout_probability=0.5"  # dropped samples take the empty caption's entry


def test_workers_train_the_same_weights_and_resume_exactly(train_ws, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    base = ("--max_train_steps=4", "--checkpointing_steps=2", DROPOUT)
    assert main(train_args(train_ws, straight, *base, "--dataloader_num_workers=0")) == 0
    two = ("--max_train_steps=2", "--checkpointing_steps=2", DROPOUT)
    assert main(train_args(train_ws, resumed, *two, "--dataloader_num_workers=2")) == 0
    again = (*base, "--dataloader_num_workers=2", "--resume_from_checkpoint=latest")
    assert main(train_args(train_ws, resumed, *again)) == 0
    a, b = unet_weights(straight), unet_weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _count_reads(monkeypatch) -> list[int]:
    """Cache files read by this process (a forked worker counts in its own copy)."""
    reads = [0]
    real = cache_module._read

    def counted(*args, **kwargs):
        reads[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(cache_module, "_read", counted)
    return reads


@pytest.mark.parametrize("workers", [None, 0])
def test_a_cache_larger_than_memory_is_read_by_workers(train_ws, tmp_path, monkeypatch, workers):
    from expertune.train.loop import Trainer

    monkeypatch.setattr(cache_module, "default_memory_budget", lambda: 0)  # nothing fits
    flags = train_args(train_ws, tmp_path / "out", "--max_train_steps=3", DROPOUT)[3:]
    if workers is not None:
        flags.append(f"--dataloader_num_workers={workers}")
    trainer = Trainer(load_config(str(train_ws / "config" / "stage1.env"), flags)).setup()
    assert not trainer.data.dataset.in_memory()
    seen: list[type] = []
    real = Trainer._step

    def step(self, source):
        seen.append(type(source))
        return real(self, source)

    monkeypatch.setattr(Trainer, "_step", step)
    reads = _count_reads(monkeypatch)
    trainer.train()
    if workers is None:  # the default: 2 workers read every entry, this process none
        assert set(seen) == {PrefetchedBatches} and reads[0] == 0
    else:  # asked for none: this process reads each sample's two entries every step
        assert set(seen) == {BatchSource} and reads[0] >= 3 * 2 * 2


def test_a_cache_in_memory_is_served_in_process(train_ws, tmp_path, monkeypatch):
    from expertune.train.loop import Trainer

    flags = train_args(train_ws, tmp_path / "out", "--max_train_steps=2", DROPOUT)[3:]
    trainer = Trainer(load_config(str(train_ws / "config" / "stage1.env"), flags)).setup()
    assert trainer.data.dataset.in_memory()
    reads = _count_reads(monkeypatch)
    trainer.train()
    assert reads[0] == 0  # every entry, the empty caption's included, comes from memory


class _Numbers(torch.utils.data.Dataset):
    """Sample i is the number i: a batch shows which samples it holds."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"latents": torch.tensor([float(i)])}


def test_prefetched_batches_are_the_sources_in_order_and_after_a_jump():
    from types import SimpleNamespace

    acc = SimpleNamespace(process_index=0, num_processes=1, device=torch.device("cpu"))
    source = BatchSource(_Numbers(), seed=7, batch_size=2, accelerator=acc)
    ahead = PrefetchedBatches(source, start=0, count=20, workers=1)
    try:
        positions = [0, 2, 4, 12, 14, 6]  # in order, then a jump ahead, then back
        for position in positions:
            assert torch.equal(ahead.batch(position)["latents"], source.batch(position)["latents"])
    finally:
        ahead.close()
