"""Expert folders for router tests, made from the tiny model without training, and the
hooks that record which timesteps each expert UNet really receives.

Each expert is a copy of the tiny SDXL pipeline whose UNet weights are nudged by its own
seeded noise (so experts give different images), with an expertune.json that records its
band, as a finished run writes it (format 1 keys; format 2 adds keys the router ignores).
The VAE and text side are the tiny model's in every copy, and the records say so.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch

T = 1000
PARTS = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")


def perturbed_unet(model_dir: Path, seed: int, scale: float = 0.05):
    """The tiny model's UNet with every weight moved by `scale` * seeded normal noise."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen) * (p.std() if p.numel() > 1 else 1))
    return unet


def make_expert(
    model_dir: Path, out: Path, band: tuple[int, int], seed: int, *, param: dict | None = None
) -> Path:
    """Copy the tiny model to `out`, perturb its UNet and write its expertune.json."""
    shutil.copytree(model_dir, out, ignore=shutil.ignore_patterns("unet"))
    perturbed_unet(model_dir, seed).save_pretrained(out / "unet", safe_serialization=True)
    if param:
        sched = out / "scheduler" / "scheduler_config.json"
        sched.write_text(json.dumps({**json.loads(sched.read_text()), **param}))
    lo, hi = band
    record = {
        "format": 1,
        "role": "base" if hi == T - 1 else "refiner" if lo == 0 else "middle",
        "model_family": "sdxl",
        "band": [lo, hi],
        "num_train_timesteps": T,
        "refiner_training": True,
        "refiner_training_strength": round(lo / T, 6) if hi == T - 1 else round((hi + 1) / T, 6),
        "encoder_fingerprints": {"vae": "tiny-vae", "text": "tiny-text"},
        "component_fingerprints": {p: f"tiny-{p}" for p in PARTS},
    }
    (out / "expertune.json").write_text(json.dumps(record))
    return out


def make_experts(model_dir: Path, root: Path, edges: Sequence[int], **kw) -> list[Path]:
    """One expert folder per band of `edges` (ascending), in denoising order (high first)."""
    bands = list(zip(edges[:-1], [e - 1 for e in edges[1:]], strict=True))[::-1]
    return [
        make_expert(model_dir, root / f"expert{i}", band, seed=100 + i, **kw)
        for i, band in enumerate(bands)
    ]


def write_manifest(root: Path, experts: Sequence[Path], param: dict | None = None) -> Path:
    """OUTPUT_ROOT/moe.json as `expertune moe` writes it (paths relative to the root)."""
    entries = []
    for folder in experts:
        record = json.loads((folder / "expertune.json").read_text())
        lo = record["band"][0]
        entries.append(
            {
                "name": folder.name,
                "band": record["band"],
                "path": folder.name,
                "handover": round(1 - lo / T, 6),
            }
        )
    manifest = {"experts": entries, "parameterisation": param or {}}
    (root / "moe.json").write_text(json.dumps(manifest))
    return root


class CallLog:
    """Records (expert index, timestep) for every forward of the hooked UNets."""

    def __init__(self, unets) -> None:
        self.calls: list[tuple[int, float]] = []
        self.handles = [
            unet.register_forward_pre_hook(self._hook(i), with_kwargs=True)
            for i, unet in enumerate(unets)
        ]

    def _hook(self, i: int):
        def record(module, args, kwargs):
            t = args[1] if len(args) > 1 else kwargs["timestep"]
            self.calls.extend((i, float(x)) for x in torch.as_tensor(t).flatten().tolist())

        return record

    @property
    def timesteps(self) -> list[float]:
        return [t for _, t in self.calls]

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def out_of_band(calls, edges: Sequence[int]) -> int:
    """Calls where expert i (ascending bands) got a timestep outside ``[e_i, e_{i+1})``.

    The outer ends are open (below 0 belongs to expert 0, T and above to the top expert).
    """
    k = len(edges) - 1
    bad = 0
    for i, t in calls:
        low_ok = i == 0 or t >= edges[i]
        high_ok = i == k - 1 or t < edges[i + 1]
        bad += not (low_ok and high_ok)
    return bad
