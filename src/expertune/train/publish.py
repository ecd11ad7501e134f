"""The final pipeline, published into OUTPUT_DIR with one atomic rename.

    OUTPUT_DIR/
      model_index.json -> .pipeline/current/model_index.json
      unet -> .pipeline/current/unet          one relative link per entry, made once
      expertune.json -> .pipeline/current/expertune.json
      .pipeline/current -> v000002            the pointer, replaced with os.replace
      .pipeline/v000002/                      a complete pipeline (save_pretrained + records)

A new version is written and fsynced beside the current one, then `current` is switched
by one rename. A reader (`StableDiffusionXLPipeline.from_pretrained(OUTPUT_DIR)` follows
the links) sees the previous complete pipeline or the new one, never a mix of the two;
a crash before the switch leaves only a hidden leftover, removed by the next publish.

The one non-atomic path is the first publish into a folder that holds a pipeline as real
files (saved by hand or by an older expertune): its model_index.json is moved away
first, so for that moment the folder holds no loadable pipeline rather than a mix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from expertune.train.storage import fsync_dir, fsync_tree, remove_tree

STORE = ".pipeline"
POINTER = "current"
INDEX = "model_index.json"
_VERSION = re.compile(r"^v(\d+)$")


def publish(output_dir: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(folder)` to fill a new version, then make it OUTPUT_DIR's pipeline."""
    store = output_dir / STORE
    store.mkdir(parents=True, exist_ok=True)
    prune(store)
    version = f"v{_next_number(store):06d}"
    staging = store / f".{version}.tmp"
    remove_tree(staging)
    staging.mkdir()
    try:
        write(staging)
        fsync_tree(staging)
        os.replace(staging, store / version)
    except BaseException:
        remove_tree(staging)
        raise
    _switch(store, version)
    _link_entries(output_dir, sorted(p.name for p in (store / version).iterdir()))
    _drop_dangling_links(output_dir)
    prune(store)
    return store / version


def current_version(output_dir: Path) -> Path | None:
    """The folder OUTPUT_DIR's pipeline links lead to, or None before the first publish."""
    pointer = output_dir / STORE / POINTER
    return pointer.resolve() if pointer.is_symlink() and pointer.exists() else None


def prune(store: Path) -> None:
    """Remove every version but the current one, and leftovers of interrupted publishes."""
    keep = os.readlink(store / POINTER) if (store / POINTER).is_symlink() else None
    for child in store.iterdir():
        if child.name not in (POINTER, keep):
            remove_tree(child)


def _next_number(store: Path) -> int:
    numbers = [int(m.group(1)) for c in store.iterdir() if (m := _VERSION.match(c.name))]
    return max(numbers, default=0) + 1


def _switch(store: Path, version: str) -> None:
    """Point `current` at `version`: a new link renamed over the old one (atomic)."""
    tmp = store / f".{POINTER}.tmp"
    remove_tree(tmp)
    os.symlink(version, tmp)
    os.replace(tmp, store / POINTER)
    fsync_dir(store)


def _link_entries(output_dir: Path, entries: list[str]) -> None:
    """Make each OUTPUT_DIR/<entry> a link through `current`; model_index.json goes last.

    Links that already point there are left alone (the usual case after the first
    publish). A real file or folder in the way is a pipeline saved another way: its
    model_index.json is moved away first, then each entry is replaced by its link.
    """
    index = output_dir / INDEX
    if index.exists() and not index.is_symlink():
        os.replace(index, output_dir / STORE / f".replaced-{INDEX}")
    for name in [e for e in entries if e != INDEX] + [INDEX]:
        _link(output_dir / name, f"{STORE}/{POINTER}/{name}")
    fsync_dir(output_dir)


def _link(path: Path, target: str) -> None:
    if path.is_symlink() and os.readlink(path) == target:
        return
    if path.is_dir() and not path.is_symlink():
        os.replace(path, path.parent / STORE / f".replaced-{path.name}")
    tmp = path.with_name(f".{path.name}.link.tmp")
    remove_tree(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _drop_dangling_links(output_dir: Path) -> None:
    """Remove links into `current` whose entry the new version no longer has (e.g. LoRA)."""
    prefix = f"{STORE}/{POINTER}/"
    for child in output_dir.iterdir():
        if child.is_symlink() and os.readlink(child).startswith(prefix) and not child.exists():
            child.unlink()
