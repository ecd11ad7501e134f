"""Small I/O helpers every room may use: quiet library progress bars while loading/saving.

Atomic file writes still live in train/storage.py (write_json_atomic, fsync); they move
here once the output records are all written through records/.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def no_progress_bars() -> Iterator[None]:
    """Silence transformers' and diffusers' load/save progress bars ("Loading weights",
    "Writing model shards") for the block: stderr is kept for what the user must read."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    libraries = [lib for lib in (hf_logging, diffusers_logging) if lib.is_progress_bar_enabled()]
    for lib in libraries:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib in libraries:
            lib.enable_progress_bar()


def write_text_atomic(path, text: str) -> None:
    """Write `text` beside `path`, then rename it into place: readers see old or new."""
    import os
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
