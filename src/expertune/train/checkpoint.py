"""Checkpoints that are complete or absent: written beside, marked, then renamed into place.

A checkpoint folder `checkpoint-STEP/` holds the trainable weights (safetensors), the
optimizer and lr-scheduler state (tensors and numbers only, read back with
`weights_only=True`), every RNG state the loop uses (safetensors), and `state.json`
(step, data position). The `COMPLETE` marker is written last; a folder without it, or
whose files fail to load, is never resumed from.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from expertune.errors import ConfigError

MARKER = "COMPLETE"
_NAME = re.compile(r"^checkpoint-(\d+)$")


@dataclass
class LoopState:
    """Counters a resumed run must continue from."""

    step: int = 0
    position: int = 0  # samples consumed from the data order, all processes together
    epoch: int = 0


def checkpoint_dirs(output_dir: Path) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first."""
    found = []
    if not output_dir.is_dir():
        return found
    for child in output_dir.iterdir():
        m = _NAME.match(child.name)
        if m and child.is_dir() and (child / MARKER).is_file():
            found.append((int(m.group(1)), child))
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    dirs = checkpoint_dirs(output_dir)
    return dirs[-1] if dirs else None


def resolve_resume(output_dir: Path, resume_from: str) -> Path:
    """Map `--resume_from_checkpoint` (latest, a name, or a path) to a complete checkpoint."""
    if resume_from == "latest":
        found = latest_checkpoint(output_dir)
        if found is None:
            raise ConfigError(
                f"--resume_from_checkpoint latest: no complete checkpoint in {output_dir}; "
                "drop the flag to start fresh"
            )
        return found
    path = Path(resume_from)
    if not path.is_absolute() and not path.exists():
        path = output_dir / resume_from
    if not (path / MARKER).is_file():
        raise ConfigError(
            f"--resume_from_checkpoint {resume_from}: {path} is not a complete checkpoint "
            "(missing or interrupted while saving); use 'latest' or another checkpoint"
        )
    return path


def save_checkpoint(
    output_dir: Path,
    state: LoopState,
    weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    lr_scheduler,
    rng: dict[str, torch.Tensor],
    total_limit: int | None = None,
) -> Path:
    """Write `checkpoint-STEP` atomically; then drop the oldest beyond `total_limit`."""
    final = output_dir / f"checkpoint-{state.step}"
    tmp = output_dir / f".checkpoint-{state.step}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in weights.items()}, tmp / "model.safetensors"
    )
    torch.save(
        {"optimizer": optimizer.state_dict(), "lr_scheduler": lr_scheduler.state_dict()},
        tmp / "optimizer.pt",
    )
    save_file({k: v.cpu() for k, v in rng.items()}, tmp / "rng.safetensors")
    (tmp / "state.json").write_text(json.dumps(asdict(state)))
    _fsync_tree(tmp)
    (tmp / MARKER).write_text("ok\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(output_dir)
    if total_limit:
        for old in checkpoint_dirs(output_dir)[:-total_limit]:
            shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, optimizer, lr_scheduler) -> tuple[LoopState, dict, dict]:
    """Read a complete checkpoint: (loop state, trainable weights, rng states).

    The optimizer and lr scheduler are restored in place. Corrupt files raise ConfigError.
    """
    try:
        weights = load_file(path / "model.safetensors")
        rng = load_file(path / "rng.safetensors")
        opt = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
        state = LoopState(**json.loads((path / "state.json").read_text()))
    except Exception as exc:  # any unreadable part means the checkpoint cannot be trusted
        raise ConfigError(
            f"checkpoint {path} is corrupt ({type(exc).__name__}); delete it or resume "
            "from an earlier checkpoint with --resume_from_checkpoint"
        ) from exc
    optimizer.load_state_dict(opt["optimizer"])
    lr_scheduler.load_state_dict(opt["lr_scheduler"])
    return state, weights, rng


def _fsync_tree(folder: Path) -> None:
    for f in folder.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
