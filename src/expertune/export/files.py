"""Writing an exported file: the dtype, the refusal to overwrite, the atomic rename."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from expertune.errors import ConfigError, SaveError
from expertune.train.storage import fsync_dir, os_error_of

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(
            f"--dtype {name!r} is not one of {', '.join(DTYPES)}; pick one of them"
        ) from None


def check_target(path: Path, overwrite: bool) -> None:
    """Refuse, before anything is read or written, an output that exists or has no folder."""
    if path.is_dir():
        raise ConfigError(
            f"{path} is a folder; give the output file's name, e.g. {path / 'x.safetensors'}"
        )
    if path.exists() and not overwrite:
        raise ConfigError(f"{path} already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise ConfigError(f"{path.parent} does not exist; create it or pick another output path")


def cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Floating-point tensors in `dtype`, contiguous (safetensors refuses views)."""
    return {k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in state.items()}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_safetensors(path: Path, state: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write beside `path`, fsync, rename over it: the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        save_file(state, str(tmp), metadata={"format": "pt", **metadata})
        os.chmod(tmp, 0o666 & ~_umask())  # safetensors writes 0600; others' tools read this
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except Exception as exc:
        err = os_error_of(exc)
        if err is None:
            raise
        raise SaveError(
            f"could not write {path}: {err.strerror} (errno {err.errno}); any earlier file "
            "there is intact. Free disk space or pick a writable folder, then export again"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path
