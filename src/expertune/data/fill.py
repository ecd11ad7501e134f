"""Compute missing cache entries in fixed chunks, once between any number of builders.

Chunks: the jobs of one group (one cache folder, one tensor shape) sorted by key and cut
every `batch_size`. A chunk with any entry missing is encoded whole and only its missing
entries are written. Batched kernels may round differently when a batch holds other
inputs, so fixing every encoder call's batch by the job list alone makes a cache's bytes
the same whether one builder made it or several, in whatever order they ran.

Locks: a builder takes the locks of a chunk's missing entries without waiting; if another
builder holds any, it moves on and comes back to that chunk at the end, waiting then.
Keys are locked in sorted order, so builders never wait on each other in a cycle, and
each re-checks under the lock, so an entry another builder finished is not made again.

Failures: a job whose `prepare` raises DataError (an image found truncated or corrupt
when decoded) is left out of its chunk and recorded in `failed`; the chunk goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from tqdm.auto import tqdm

from expertune.data.cache import OK, Cache, Tensors
from expertune.errors import DataError

Job = TypeVar("Job")
Chunk = list[tuple[str, Job]]


def chunks(jobs: dict[str, Job], batch_size: int) -> list[Chunk]:
    """`jobs` (key -> job) sorted by key and cut into lists of `batch_size`."""
    ordered = sorted(jobs.items(), key=lambda kv: kv[0])
    return [ordered[i : i + batch_size] for i in range(0, len(ordered), batch_size)]


@contextlib.contextmanager
def progress_bar(show: bool, desc: str, unit: str, total: int) -> Iterator[tqdm]:
    """A tqdm bar (rate in `unit`/s) that is silent when not `show` or nothing is to do.

    When stderr is not a terminal (a log file) it refreshes at most once a minute, so a
    log holds its first and last state, not a fragment per refresh."""
    import sys

    every = 0.1 if sys.stderr.isatty() else 60.0
    with tqdm(
        total=total, desc=desc, unit=unit, disable=not (show and total), mininterval=every
    ) as bar:
        yield bar


class Filler(Generic[Job]):
    """Fills one group of jobs into one kind of one cache (see the module docstring).

    Counts at construction what is present (`hits`) and missing (`misses`); `run` then
    computes what is still missing, and `written` / `failed` say what it did.
    """

    def __init__(
        self,
        cache: Cache,
        kind: str,
        jobs: dict[str, Job],
        prepare: Callable[[Job], object],  # job -> encoder input; DataError when unusable
        encode: Callable[[list], list[Tensors]],  # inputs -> one entry per input
        batch_size: int,
    ) -> None:
        self.cache, self.kind = cache, kind
        self.prepare, self.encode = prepare, encode
        self.chunks = chunks(jobs, batch_size)
        # The first read of each entry in this run checks its digest: a damaged entry is a
        # miss here and is rebuilt; an intact one stays in memory for training.
        self._present = {key for key in jobs if cache.load(kind, key) is not None}
        self.hits = len(self._present)
        self.misses = len(jobs) - self.hits
        self.written = 0
        self.failed: dict[str, str] = {}

    def run(self, bar: tqdm) -> None:
        """Fill every chunk, chunks held by other builders last."""
        deferred = [chunk for chunk in self.chunks if not self._fill(chunk, bar, blocking=False)]
        for chunk in deferred:
            self._fill(chunk, bar, blocking=True)

    def _missing(self, keys: list[str]) -> list[str]:
        """Keys still without an intact entry (another builder may have made them)."""
        return [k for k in keys if self.cache.check(self.kind, k) != OK]

    def _fill(self, chunk: Chunk, bar: tqdm, blocking: bool) -> bool:
        """Fill one chunk; False (holding nothing) if another builder holds part of it."""
        missing = self._missing([key for key, _ in chunk if key not in self._present])
        if not missing:
            return True
        with contextlib.ExitStack() as held:
            for key in missing:
                if not held.enter_context(self.cache.lock(self.kind, key, blocking=blocking)):
                    return False
            todo = set(self._missing(missing))
            if todo:
                self._compute(chunk, todo)
        bar.update(len(missing))
        return True

    def _compute(self, chunk: Chunk, todo: set[str]) -> None:
        inputs, keys = [], []
        for key, job in chunk:
            try:
                inputs.append(self.prepare(job))
                keys.append(key)
            except DataError as error:
                if key in todo:
                    self.failed[key] = error.message
        if not inputs:
            return
        for key, tensors in zip(keys, self.encode(inputs), strict=True):
            if key in todo:
                self.cache.put(self.kind, key, tensors)
                self.written += 1
