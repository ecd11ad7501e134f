"""A content-addressed cache of tensors on disk, shared by jobs that train different experts.

An entry is one safetensors file at `root/kind/key[:2]/key.safetensors`; the key is a
sha256 of everything the tensors depend on (encoder fingerprint, preprocessing, input),
so two jobs that would compute the same tensors find the same file, and a changed encoder
or input simply misses. Entries are written to a temporary file in the same directory,
and renamed into place, so a reader sees the whole old file, the whole new file
or nothing. A per-entry file lock lets concurrent builders compute each entry once.
Reads check the safetensors header against the file length and a sha256 of the tensors
stored in the metadata; anything that fails is a miss, and rebuilding overwrites it.

Within a run, an entry's digest is checked once, when the build first reads it (a
damaged entry is then a miss and is rebuilt); the tensors are kept in memory while they
fit (`MemoryStore`), so a training step serves them without reading or hashing a file.
An entry that did not fit is read again from disk without re-hashing (by the training
run's batch workers, train/batches.py, so the training process does not wait on it).

`kill -9` at any point leaves only whole entries and, at worst, a `.*.tmp` file or a
`.lock` file that no reader looks at (`leftovers` lists them; `expertune cache prune`
removes old ones): the kernel keeps a killed process's writes. Entries are not fsynced:
a crash of the whole machine may lose recent entries or leave a renamed file whose data
never reached the disk, and the length and digest checks make that a miss (recomputed),
never data. A cache needs correctness, not durability, and fsync would cost more than a
small encoder's forward pass per entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import struct
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from expertune.errors import DataError

Tensors = dict[str, torch.Tensor]
DIGEST_KEY = "expertune_sha256"
_KIND = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
_KEY = re.compile(r"^[0-9a-f]{64}$")
_MAX_HEADER = 100 * 1024 * 1024


def cache_key(*parts: bytes | str) -> str:
    """sha256 hex of the parts, each length-prefixed so that ("ab", "c") != ("a", "bc")."""
    digest = hashlib.sha256()
    for part in parts:
        raw = part.encode("utf-8") if isinstance(part, str) else bytes(part)
        digest.update(len(raw).to_bytes(8, "little"))
        digest.update(raw)
    return digest.hexdigest()


def tensors_digest(tensors: Tensors) -> str:
    """sha256 of names, dtypes, shapes and bytes, independent of the file layout."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        flat = tensors[name].detach().cpu().contiguous().reshape(-1)
        header = f"{name}|{flat.dtype}|{tuple(tensors[name].shape)}|"
        digest.update(header.encode("utf-8"))
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class EntryFile:
    """One entry on disk, as `Cache.entries` finds it."""

    kind: str
    key: str
    path: Path
    size: int  # bytes


@dataclass
class KindCounts:
    """Lookups of one kind of entry: found valid, not found, found but invalid."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0


class MemoryStore:
    """Verified entries kept in memory for the run, up to `budget` bytes (module docstring)."""

    def __init__(self, budget: int | None = None) -> None:
        self.budget = default_memory_budget() if budget is None else budget
        self.used = 0
        self.left_out = 0  # entries that did not fit: served from disk
        self._entries: dict[tuple[Path, str, str], Tensors] = {}

    def keep(self, root: Path, kind: str, key: str, tensors: Tensors) -> None:
        if (root, kind, key) in self._entries:
            return
        size = sum(t.numel() * t.element_size() for t in tensors.values())
        if self.used + size <= self.budget:
            self._entries[(root, kind, key)] = tensors
            self.used += size
        else:
            self.left_out += 1

    def recall(self, root: Path, kind: str, key: str) -> Tensors | None:
        return self._entries.get((root, kind, key))


def default_memory_budget() -> int:
    """Half the memory free when the run starts (4 GiB where the system does not say),
    shared by the training processes of this machine (each holds its own copy)."""
    try:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        free = 8 << 30
    try:
        local_processes = max(int(os.environ.get("LOCAL_WORLD_SIZE", "1")), 1)
    except ValueError:
        local_processes = 1
    return free // 2 // local_processes


class Cache:
    """Tensors by (kind, key) under `root`; see the module docstring for the guarantees."""

    key = staticmethod(cache_key)

    def __init__(self, root: str | Path, memory: MemoryStore | None = None) -> None:
        self.root = Path(root)
        self.counts: dict[str, KindCounts] = {}
        self.memory = memory if memory is not None else MemoryStore(0)
        self._verified: set[tuple[str, str]] = set()  # digests checked in this run

    @property
    def hits(self) -> int:
        return sum(c.hits for c in self.counts.values())

    @property
    def misses(self) -> int:
        return sum(c.misses for c in self.counts.values())

    def path(self, kind: str, key: str) -> Path:
        """Where the entry lives; rejects names that could leave the cache folder."""
        if not _KIND.match(kind) or not _KEY.match(key):
            raise ValueError(f"bad cache kind {kind!r} or key {key!r}")
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def get(self, kind: str, key: str) -> Tensors | None:
        """The entry's tensors if present and intact, else None (counted as a miss)."""
        return self._count(kind, *_read(self.path(kind, key), full=True))

    def load(self, kind: str, key: str) -> Tensors | None:
        """`get`, remembering that the digest was checked and keeping the tensors in memory
        when they fit: the first read of an entry in a run."""
        found = self.get(kind, key)
        if found is not None:
            self._verified.add((kind, key))
            self.memory.keep(self.root, kind, key, found)
        return found

    def serve(self, kind: str, key: str) -> Tensors | None:
        """The tensors of an entry this run already loaded or stored: from memory, or read
        again without re-hashing (the length check still applies); None if it is gone.
        Uncounted: this is the training hot path, not a lookup."""
        found = self.memory.recall(self.root, kind, key)
        if found is not None:
            return found
        if (kind, key) not in self._verified:
            return self.load(kind, key)
        return _read(self.path(kind, key), full=True, check_digest=False)[1]

    def contains(self, kind: str, key: str, count: bool = True) -> bool:
        """Whether an intact-looking entry exists, checking header and length, not data.

        `count=False` re-checks (say, after taking the lock) without touching the counters.
        """
        status, _ = _read(self.path(kind, key), full=False)
        if count:
            self._count(kind, status, None)
        return status == OK

    def put(self, kind: str, key: str, tensors: Tensors) -> Tensors:
        """Write the entry atomically and return the CPU copies that were stored."""
        stored = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
        # One metadata key: safetensors writes a map's keys in a per-process random order,
        # and one key keeps an entry's bytes the same whichever process wrote it.
        metadata = {DIGEST_KEY: tensors_digest(stored)}
        with self._writing():
            _atomic_write(self.path(kind, key), save_bytes(stored, metadata=metadata))
        self._verified.add((kind, key))
        self.memory.keep(self.root, kind, key, stored)
        return stored

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A folder that cannot be written (read-only, under a file, full) is one DataError."""
        try:
            yield
        except Timeout:  # a TimeoutError, so an OSError: another builder holds the lock
            raise
        except OSError as err:
            raise DataError(
                f"cache folder {self.root} cannot be written ({err.strerror or err}) and "
                "entries are missing there; make it writable (or free space), or point "
                "CACHE_DIR (or the dataset's cache_dir_vae / text_embeds cache_dir) at a "
                "writable folder"
            ) from err

    def get_or_compute(self, kind: str, key: str, fn: Callable[[], Tensors]) -> Tensors:
        """The entry, computing and storing it under the entry lock if no one has yet."""
        found = self.get(kind, key)
        if found is not None:
            return found
        with self.lock(kind, key):
            _, found = _read(self.path(kind, key), full=True)
            return found if found is not None else self.put(kind, key, fn())

    @contextlib.contextmanager
    def lock(self, kind: str, key: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the entry's lock; yields False at once (holding nothing) if not `blocking`
        and another builder holds it."""
        lock_path = self.path(kind, key).with_suffix(".lock")
        lock = FileLock(lock_path)
        try:
            with self._writing():
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                lock.acquire(blocking=blocking)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            # Unlinking while held is safe with filelock >= 4: a waiter that opened the old
            # inode sees it unlinked and retries; it then re-checks the entry and finds it.
            with contextlib.suppress(FileNotFoundError):
                lock_path.unlink()
            lock.release()

    def entries(self) -> Iterator[EntryFile]:
        """Every entry file under the root, by kind then key (other files are ignored)."""
        if not self.root.is_dir():
            return
        for kind_dir in sorted(p for p in self.root.iterdir() if _KIND.match(p.name)):
            for path in sorted(kind_dir.glob("??/*.safetensors")):
                key = path.name.removesuffix(".safetensors")
                if _KEY.match(key) and path.parent.name == key[:2]:
                    yield EntryFile(kind_dir.name, key, path, path.stat().st_size)

    def leftovers(self) -> list[Path]:
        """Temporary and lock files a killed builder may have left (never read as entries)."""
        if not self.root.is_dir():
            return []
        found = [*self.root.glob("*/??/.*.tmp"), *self.root.glob("*/??/*.lock")]
        return sorted(p for p in found if _KIND.match(p.parent.parent.name))

    def check(self, kind: str, key: str) -> str:
        """OK, ABSENT or CORRUPT after reading the whole entry and checking its digest."""
        return _read(self.path(kind, key), full=True)[0]

    def _count(self, kind: str, status: str, found: Tensors | None) -> Tensors | None:
        counts = self.counts.setdefault(kind, KindCounts())
        counts.hits += status == OK
        counts.misses += status != OK
        counts.corrupt += status == CORRUPT
        return found


OK, ABSENT, CORRUPT = "ok", "absent", "corrupt"


class Caches:
    """One Cache per folder, made on first use, so all readers of a folder share counters
    and one memory budget (`memory_budget` bytes; None: half the free memory)."""

    def __init__(self, memory_budget: int | None = None) -> None:
        self._by_root: dict[Path, Cache] = {}
        self.memory = MemoryStore(memory_budget)

    def __call__(self, root: str | Path) -> Cache:
        root = Path(root)
        if root not in self._by_root:
            self._by_root[root] = Cache(root, self.memory)
        return self._by_root[root]

    def __iter__(self) -> Iterator[Cache]:
        return iter(list(self._by_root.values()))


def _read(path: Path, full: bool, check_digest: bool = True) -> tuple[str, Tensors | None]:
    """(OK, tensors or None when not `full`), (ABSENT, None) or (CORRUPT, None).

    `check_digest=False` skips hashing the tensors (for an entry verified earlier)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            (header_len,) = struct.unpack("<Q", handle.read(8))
            if header_len > min(size - 8, _MAX_HEADER):
                return CORRUPT, None
            header = json.loads(handle.read(header_len))
            ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
            digest = (header.get("__metadata__") or {}).get(DIGEST_KEY)
            if size != 8 + header_len + max(ends, default=0) or not digest:
                return CORRUPT, None
            if not full:
                return OK, None
            handle.seek(0)
            tensors = load_bytes(handle.read())
    except FileNotFoundError:
        return ABSENT, None
    except Exception:  # any parse failure means a damaged file, which is a miss
        return CORRUPT, None
    if check_digest and tensors_digest(tensors) != digest:
        return CORRUPT, None
    return OK, tensors


def _atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then os.replace it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o644)
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
