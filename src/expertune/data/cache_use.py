"""Which cache entries running jobs read, so `expertune cache prune` leaves them alone.

A job claims its entries before it reads them: in each cache folder it writes
`.in-use/<host>-<pid>-<id>.json` (the entries) and holds a lock on the file beside it
for as long as it runs. The kernel drops the lock when the process ends, however it
ends, so a claim whose lock can be taken belongs to a dead job and is stale. Prune keeps
every entry a live claim names. Claiming is best effort: a folder the job cannot write
(a read-only shared cache) is read without a claim.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

IN_USE = ".in-use"
Entry = tuple[str, str]  # (kind, key)


class Claim:
    """A live job's claim on cache entries; `close` (or the process ending) releases it."""

    def __init__(self) -> None:
        self._held: list[tuple[FileLock, Path]] = []

    def add(self, root: Path, entries: Iterable[Entry]) -> None:
        """Claim `entries` of the cache folder `root` (skipped when it cannot be written)."""
        folder = Path(root) / IN_USE
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        record = folder / f"{name}.json"
        lock = FileLock(folder / f"{name}.lock")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=0)  # lock first: a prune never sees an unlocked claim
            tmp = folder / f".{name}.tmp"
            body = {"pid": os.getpid(), "host": socket.gethostname(), "entries": sorted(entries)}
            tmp.write_text(json.dumps(body))
            os.replace(tmp, record)
        except OSError as err:
            log.debug("cache folder %s is not claimed (%s); reading it anyway", root, err)
            with contextlib.suppress(OSError):
                lock.release()
            return
        self._held.append((lock, record))

    def close(self) -> None:
        for lock, record in self._held:
            with contextlib.suppress(OSError):
                record.unlink()
            with contextlib.suppress(OSError):
                Path(lock.lock_file).unlink()
            lock.release()
        self._held.clear()


def claimed(root: Path) -> tuple[set[Entry], list[str]]:
    """(entries named by live claims in `root`, who holds them); stale claims are removed."""
    entries: set[Entry] = set()
    holders: list[str] = []
    folder = Path(root) / IN_USE
    if not folder.is_dir():
        return entries, holders
    for record in sorted(folder.glob("*.json")):
        lock = FileLock(record.with_suffix(".lock"))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            entries.update((str(k), str(v)) for k, v in data.get("entries", []))
            holders.append(f"pid {data.get('pid')} on {data.get('host')}")
            continue
        except OSError:
            continue
        with contextlib.suppress(OSError):  # its job is gone: the claim is stale
            record.unlink()
            record.with_suffix(".lock").unlink()
        lock.release()
    return entries, holders
