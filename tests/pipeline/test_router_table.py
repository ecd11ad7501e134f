"""Out-of-band denoiser calls per scheduler: the two-pipeline chain (base with
`denoising_end`, refiner Img2Img with `denoising_start`) against the router, two experts
split at t=350 (the seed's strength 0.35), hooks on both UNets.

    PYTHONPATH=src python tests/pipeline/test_router_table.py   # prints the whole table
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `pipeline.` when run as a script

from expertune.pipeline.router import TimestepRouter
from expertune.pipeline.schedulers import SCHEDULER_NAMES, make_scheduler
from pipeline.router_support import CallLog, out_of_band, perturbed_unet

EDGE, T = 350, 1000
PROMPT = "a red circle"


def load_parts(model_dir: Path) -> dict:
    """The tiny pipeline's parts and two different expert UNets (low band first)."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(model_dir, add_watermarker=False)
    return {"pipe": pipe, "low": perturbed_unet(model_dir, 1), "high": perturbed_unet(model_dir, 2)}


def chain_calls(parts: dict, name: str, spacing: str, steps: int):
    """(expert, t) of every call the seed's chain makes: 1 = base (high), 0 = refiner."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    config = {**parts["pipe"].scheduler.config, "timestep_spacing": spacing}
    common = {**parts["pipe"].components}
    base = StableDiffusionXLPipeline(
        **{**common, "unet": parts["high"], "scheduler": make_scheduler(name, config)}
    )
    refiner = StableDiffusionXLImg2ImgPipeline(
        **{**common, "unet": parts["low"], "scheduler": make_scheduler(name, config)}
    )
    log = CallLog([parts["low"], parts["high"]])
    power = 1 - EDGE / T
    generator = torch.Generator().manual_seed(0)
    try:
        for pipe in (base, refiner):
            pipe.set_progress_bar_config(disable=True)
        latents = base(
            PROMPT,
            num_inference_steps=steps,
            denoising_end=power,
            guidance_scale=1.0,
            height=64,
            width=64,
            output_type="latent",
            generator=generator,
        ).images
        refiner(
            PROMPT,
            num_inference_steps=steps,
            denoising_start=power,
            guidance_scale=1.0,
            image=latents,
            output_type="latent",
            generator=generator,
        )
    finally:
        log.remove()
    return log.calls


def router_calls(parts: dict, name: str, spacing: str, steps: int):
    from diffusers import StableDiffusionXLPipeline

    config = {**parts["pipe"].scheduler.config, "timestep_spacing": spacing}
    router = TimestepRouter.from_unets([parts["low"], parts["high"]], [0, EDGE, T])
    pipe = StableDiffusionXLPipeline(
        **{**parts["pipe"].components, "unet": router, "scheduler": make_scheduler(name, config)}
    )
    pipe.set_progress_bar_config(disable=True)
    log = CallLog([parts["low"], parts["high"]])
    try:
        pipe(
            PROMPT,
            num_inference_steps=steps,
            guidance_scale=1.0,
            height=64,
            width=64,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        )
    finally:
        log.remove()
    return log.calls


def first_refiner_t(calls) -> float | None:
    return next((t for i, t in calls if i == 0), None)


def table_rows(parts, names, spacings=("leading", "trailing"), steps=(20, 40)):
    """One row per scheduler and spacing: out-of-band calls of chain and router per step count."""
    rows = []
    for name in names:
        for spacing in spacings:
            row = {"scheduler": name, "spacing": spacing}
            for n in steps:
                chain = chain_calls(parts, name, spacing, n)
                row[f"chain@{n}"] = out_of_band(chain, [0, EDGE, T])
                row[f"first refiner t@{n}"] = first_refiner_t(chain)
                row[f"router@{n}"] = out_of_band(
                    router_calls(parts, name, spacing, n), [0, EDGE, T]
                )
            rows.append(row)
    return rows


def format_table(rows) -> str:
    keys = list(rows[0])
    widths = {
        k: max(len(k), *(len(f"{r[k]:g}" if isinstance(r[k], float) else str(r[k])) for r in rows))
        for k in keys
    }
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = [" | ".join(k.ljust(widths[k]) for k in keys)]
    lines.append("-|-".join("-" * widths[k] for k in keys))
    lines += [" | ".join(fmt(r[k]).ljust(widths[k]) for k in keys) for r in rows]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    return load_parts(tiny_model_dir)


def test_heun_leaves_the_band_in_the_chain_and_never_in_the_router(parts):
    rows = table_rows(parts, ["heun", "euler", "kdpm2"], spacings=("leading",), steps=(20,))
    print("\n" + format_table(rows))
    by_name = {r["scheduler"]: r for r in rows}
    assert all(r["router@20"] == 0 for r in rows)
    assert by_name["euler"]["chain@20"] == 0
    assert by_name["heun"]["chain@20"] > 0 and by_name["heun"]["first refiner t@20"] >= EDGE


if __name__ == "__main__":
    import tempfile

    from expertune.models.tiny import build_tiny_sdxl

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_sdxl(Path(tmp) / "tiny", seed=0)
        print(format_table(table_rows(load_parts(model), SCHEDULER_NAMES)))
