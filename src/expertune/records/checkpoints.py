"""The read side of checkpoints: which sealed checkpoints a run has (no torch, no writes).

train/checkpoint.py writes and resumes them; evaluate/ (a refiner validating stage one
while it trains) only needs to find the newest one, so both read through here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from expertune.records.layout import CHECKPOINT_MARKER, RUN_FILE

_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Sealed checkpoints (COMPLETE present) in `output_dir`, oldest first."""
    found = []
    if not output_dir.is_dir():
        return found
    for child in output_dir.iterdir():
        m = _NAME.match(child.name)
        if m and child.is_dir() and (child / CHECKPOINT_MARKER).is_file():
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def unfinished_dirs(output_dir: Path) -> list[Path]:
    """`checkpoint-N` folders without COMPLETE (a save interrupted, or copied by hand):
    never resumed from, and named when `latest` passes them over."""
    if not output_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), child)
        for child in output_dir.iterdir()
        if (m := _NAME.match(child.name))
        and child.is_dir()
        and not (child / CHECKPOINT_MARKER).is_file()
    ]
    return [p for _, p in sorted(found)]


def current_run(output_dir: Path) -> str | None:
    """The id of the run OUTPUT_DIR belongs to (run.json), or None before any run claimed it."""
    try:
        return str(json.loads((output_dir / RUN_FILE).read_text())["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def run_checkpoints(output_dir: Path, run_id: str | None) -> list[Path]:
    """Sealed checkpoints of run `run_id` (all of them when None), oldest first."""
    return [p for p in checkpoint_dirs(output_dir) if belongs(p, run_id)]


def belongs(path: Path, run_id: str | None) -> bool:
    """Whether checkpoint `path` was written by run `run_id` (None: any run)."""
    if run_id is None:
        return True
    try:
        recorded = json.loads((path / "state.json").read_text()).get("run_id", "")
    except (OSError, ValueError, AttributeError):
        return True  # unreadable: let train/checkpoint.verify() report it as corrupt
    return recorded in ("", run_id)
