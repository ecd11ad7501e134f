"""The cache returns only whole, intact entries, writes atomically, computes once."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from expertune.data.cache import Cache, cache_key
from expertune.errors import DataError


def entry(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "latents": torch.randn(4, 8, 8, generator=g),
        "half": torch.randn(3, generator=g).half(),
        "brain": torch.randn(2, 5, generator=g).bfloat16(),
    }


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


KEY = cache_key("one")


def test_keys_are_sha256_and_unambiguous():
    assert len(KEY) == 64 and cache_key(b"one") == KEY
    assert cache_key("ab", "c") != cache_key("a", "bc")
    assert cache_key("a") != cache_key("a", "")


def test_round_trip_and_counts(tmp_path):
    cache = Cache(tmp_path)
    assert cache.get("latents", KEY) is None
    cache.put("latents", KEY, entry())
    assert (tmp_path / "latents" / KEY[:2] / f"{KEY}.safetensors").is_file()
    assert same(cache.get("latents", KEY), entry())
    assert cache.contains("latents", KEY)
    assert (cache.hits, cache.misses) == (2, 1)
    assert cache.counts["latents"].hits == 2
    assert [p.name for p in (tmp_path / "latents" / KEY[:2]).iterdir()] == [f"{KEY}.safetensors"]


def test_views_of_a_batch_are_stored_alone(tmp_path):
    cache = Cache(tmp_path)
    batch = torch.arange(24.0).reshape(2, 3, 4)
    stored = cache.put("latents", KEY, {"latents": batch[1]})
    assert stored["latents"].untyped_storage().nbytes() == 12 * 4
    assert torch.equal(cache.get("latents", KEY)["latents"], batch[1])
    data = cache.path("latents", KEY).read_bytes()
    assert len(data) == 8 + int.from_bytes(data[:8], "little") + 12 * 4


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:-1],  # one byte short
        lambda data: b"",  # empty
        lambda data: b"\x00" * len(data),  # zeroed
        lambda data: data[:-3] + bytes(b ^ 0xFF for b in data[-3:]),  # bits flipped in data
        lambda data: data + b"extra",  # too long
    ],
)
def test_damaged_entry_is_a_miss_and_is_rebuilt(tmp_path, damage):
    cache = Cache(tmp_path)
    cache.put("latents", KEY, entry())
    path = cache.path("latents", KEY)
    path.write_bytes(damage(path.read_bytes()))
    assert cache.get("latents", KEY) is None
    assert cache.counts["latents"].corrupt == 1
    rebuilt = cache.get_or_compute("latents", KEY, lambda: entry())
    assert same(rebuilt, entry()) and same(cache.get("latents", KEY), entry())


def test_truncation_is_seen_without_reading_the_data(tmp_path):
    cache = Cache(tmp_path)
    cache.put("latents", KEY, entry())
    path = cache.path("latents", KEY)
    path.write_bytes(path.read_bytes()[:-4])
    assert not cache.contains("latents", KEY)


def test_a_failed_write_leaves_the_old_entry_and_no_temp_file(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    cache.put("latents", KEY, entry(0))

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(DataError, match=r"cannot be written \(disk full\)"):
        cache.put("latents", KEY, entry(1))  # one line for the user, not an OSError
    monkeypatch.undo()
    assert same(cache.get("latents", KEY), entry(0))
    assert len(list(cache.path("latents", KEY).parent.iterdir())) == 1


def test_get_or_compute_computes_once_across_threads(tmp_path):
    cache, calls, results = Cache(tmp_path), [], []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return entry()

    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compute("t", KEY, slow)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 4
    assert all(same(r, entry()) for r in results)
    assert not cache.path("t", KEY).with_suffix(".lock").exists()


def _worker(root: str, marker_dir: str) -> None:
    def compute():
        open(os.path.join(marker_dir, str(os.getpid())), "w").close()
        time.sleep(0.3)
        return entry()

    Cache(root).get_or_compute("latents", KEY, compute)


def test_get_or_compute_computes_once_across_processes(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(tmp_path, markers)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    assert len(list(markers.iterdir())) == 1
    assert same(Cache(tmp_path).get("latents", KEY), entry())


def test_kind_and_key_cannot_escape_the_root(tmp_path):
    cache = Cache(tmp_path)
    with pytest.raises(ValueError):
        cache.get("../x", KEY)
    with pytest.raises(ValueError):
        cache.get("latents", "../" + KEY[3:])


def test_the_memory_budget_is_shared_by_the_processes_of_a_machine(monkeypatch):
    from expertune.data.cache import MemoryStore, default_memory_budget

    one = default_memory_budget()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert 0 < default_memory_budget() <= one // 4 + (256 << 20)  # free memory moves a bit
    store = MemoryStore(budget=200)
    store.keep(Path("r"), "latents", KEY, {"x": torch.zeros(40)})  # 160 bytes: kept
    store.keep(Path("r"), "latents", "b" * 64, {"x": torch.zeros(40)})  # would pass 200
    assert store.recall(Path("r"), "latents", KEY) is not None and store.used == 160
    assert store.recall(Path("r"), "latents", "b" * 64) is None
