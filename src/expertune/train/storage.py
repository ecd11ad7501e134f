"""Durable writes: fsync, content digests, and disk errors turned into one clear line.

Libraries report a failed write in their own ways: Python raises OSError, torch.save a
RuntimeError whose context is the OSError, safetensors a SafetensorError whose text ends in
"(os error 28)". `saving()` finds the operating-system error behind any of them and raises
one SaveError naming what was being saved, why, and that the previous copy is intact.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from expertune.errors import SaveError, UserError

_RUST_OS_ERROR = re.compile(r"os error (\d+)")
_FIXES = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free space in your disk quota",
    errno.EFBIG: "raise the file size limit (ulimit -f)",
    errno.EACCES: "make the folder writable",
    errno.EPERM: "make the folder writable",
    errno.EROFS: "point OUTPUT_DIR at a writable disk",
}


def os_error_of(exc: BaseException) -> OSError | None:
    """The operating-system error behind `exc` (itself, its cause/context, or a Rust message)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        found = _RUST_OS_ERROR.search(str(current))
        if found:
            code = int(found.group(1))
            return OSError(code, os.strerror(code))
        current = current.__cause__ or current.__context__
    return None


@contextmanager
def saving(what: str, where: Path, intact: str, resumable: bool | None = None) -> Iterator[None]:
    """Turn an OS-level failure inside the block into a SaveError; other errors pass through.

    `what` is being written to `where`; `intact` says what is still there (the previous
    checkpoint, the previous pipeline), so the user knows nothing older was lost.
    `resumable` says whether a complete checkpoint exists to resume from (None: look for
    one in `where`); without one the advice is to run again, not to resume.
    """
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        err = os_error_of(exc)
        if err is None:
            raise
        fix = _FIXES.get(err.errno, "fix the disk problem")
        if resumable is None:
            resumable = any(Path(where).glob("checkpoint-*/COMPLETE"))
        then = (
            "then run again with --resume_from_checkpoint latest"
            if resumable
            else "then run the same command again (no checkpoint exists yet to resume from)"
        )
        raise SaveError(
            f"could not write {what} in {where}: {err.strerror} (errno {err.errno}); {intact}. "
            f"{fix[0].upper()}{fix[1:]}, {then}"
        ) from exc


def fsync_tree(folder: Path) -> None:
    """fsync every file under `folder`, then every folder, so a rename publishes whole data."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as fh:
                os.fsync(fh.fileno())
        for name in dirs:
            fsync_dir(Path(root) / name)
    fsync_dir(folder)


def fsync_dir(folder: Path) -> None:
    """fsync a folder's entry list (makes a rename inside it durable)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_files(folder: Path, names: list[str]) -> dict[str, dict]:
    """{name: {"bytes": size, "sha256": hex}} for files in `folder`, hashed in parallel."""

    def one(name: str) -> dict:
        path = folder / name
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        return {"bytes": path.stat().st_size, "sha256": digest}

    with ThreadPoolExecutor(max_workers=min(4, max(len(names), 1))) as pool:
        return dict(zip(names, pool.map(one, names), strict=True))


def remove_tree(path: Path) -> None:
    """Delete a folder (or file, or link) if present; failures are ignored (best effort)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON beside `path`, fsync it, then rename over it: old or new, never half."""
    import json

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
