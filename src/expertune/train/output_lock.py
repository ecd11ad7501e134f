"""One training run per OUTPUT_DIR at a time.

Two runs on one folder race: each one's save clears the other's temporary checkpoint,
rotation deletes the other's checkpoints, and both can end with none. A run holds an
exclusive file lock on `OUTPUT_DIR/.expertune-run.lock` (filelock; the kernel drops it
when the process dies, so a killed run never leaves a stale lock) and says who it is in
`.expertune-run.json` (pid, host, start time), so a second run is refused in one line
naming the first. Only the main process (RANK 0) takes it; the others share its run.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from expertune.errors import ConfigError
from expertune.train.storage import write_json_atomic

LOCK_FILE = ".expertune-run.lock"
INFO_FILE = ".expertune-run.json"


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def hold_output_lock(output_dir: Path) -> Iterator[None]:
    """Create OUTPUT_DIR and hold its run lock for the block; ConfigError if a run has it."""
    output_dir = Path(output_dir)
    if not _is_main_process():
        yield
        return
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(output_dir / LOCK_FILE)
        lock.acquire(timeout=0)
    except Timeout:
        raise ConfigError(
            f"OUTPUT_DIR {output_dir} is in use by another training run ({_holder(output_dir)}); "
            "wait for it to finish or set another OUTPUT_DIR"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"OUTPUT_DIR {output_dir} cannot be locked for this run ({exc.strerror}); make it "
            "writable or point OUTPUT_DIR elsewhere"
        ) from exc
    try:
        write_json_atomic(
            output_dir / INFO_FILE,
            {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()},
        )
        yield
    finally:
        with contextlib.suppress(OSError):
            (output_dir / INFO_FILE).unlink()
        # Unlinking while held is safe with filelock >= 4 (a waiter retries on the new file).
        with contextlib.suppress(OSError):
            (output_dir / LOCK_FILE).unlink()
        lock.release()


def _holder(output_dir: Path) -> str:
    """'pid N on host H since HH:MM:SS' from the info file, as far as it can be read."""
    try:
        info = json.loads((output_dir / INFO_FILE).read_text())
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["started"])))
        return f"pid {info['pid']} on host {info['host']}, started {since}"
    except (OSError, ValueError, KeyError, TypeError):
        return "it has not said who it is yet"
