"""Helpers for training tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file


def train_args(ws: Path, out: Path, *flags: str) -> list[str]:
    """`expertune train` on stage one's config into `out`: quick settings, any extra flags."""
    return [
        "train",
        "--config",
        str(ws / "config" / "stage1.env"),
        f"--output_dir={out}",
        "--report_to=none",
        "--train_batch_size=2",
        *flags,
    ]


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def unet_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "unet" / "diffusion_pytorch_model.safetensors")


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
