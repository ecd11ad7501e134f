"""Generation speed of the timestep router against one plain model, side by side.

Both run the same StableDiffusionXLPipeline code on the tiny SDXL model, same steps,
prompt, size and seed: once with K=3 expert UNets behind the router (per-expert guidance
on, as `expertune generate` runs it), once with a single UNet. Models are loaded first and
each run is timed from the first denoising call to the last latents (prompt embeddings
precomputed, no VAE decode), so the ratio is what routing adds to the loop. Runs
alternate `--rounds` times, each round swapping which goes first. The ratio printed last
is the median over rounds of each round's router / single time: the two runs of a round
are adjacent, so a slow drift of the machine's load cancels in their ratio (on a shared
2-core machine the ratio of the two medians moved 0.92..1.03 between runs of the same
code; best-of ratios 0.97..1.11). The best-of and median-of ratios are printed too.

Peak memory: two fresh processes load (a) the routed pipeline over K experts and (b) one
pipeline plus K-1 extra UNets by hand, the least K experts can take; their peak RSS is
printed before the ratio.

    python benchmarks/generate.py [--steps 30] [--rounds 5] [--experts 3]

Last line: `router_overhead_ratio <median over rounds of router seconds / single seconds>`
(target <= 1.02).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

T = 1000


def make_experts(model: Path, root: Path, k: int) -> list[Path]:
    """K copies of the tiny model, UNets nudged apart, with records of K equal bands."""
    from diffusers import UNet2DConditionModel

    edges = [round(i * T / k) for i in range(k + 1)]
    folders = []
    for i in range(k):
        out = root / f"expert{i}"
        shutil.copytree(model, out, ignore=shutil.ignore_patterns("unet"))
        unet = UNet2DConditionModel.from_pretrained(model, subfolder="unet")
        gen = torch.Generator().manual_seed(i)
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(0.05 * p.std().nan_to_num() * torch.randn(p.shape, generator=gen))
        unet.save_pretrained(out / "unet", safe_serialization=True)
        parts = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
        record = {
            "band": [edges[i], edges[i + 1] - 1],
            "num_train_timesteps": T,
            "component_fingerprints": {p: f"tiny-{p}" for p in parts},
        }
        (out / "expertune.json").write_text(json.dumps(record))
        folders.append(out)
    return folders


def timed(pipe, embeds, steps: int) -> float:
    """Seconds from the first denoiser call to the returned latents."""
    start = []
    hook = pipe.unet.register_forward_pre_hook(
        lambda *a: start.append(time.perf_counter()) if not start else None
    )
    try:
        pipe(
            **embeds,
            num_inference_steps=steps,
            guidance_scale=5.0,
            height=64,
            width=64,
            output_type="latent",
            generator=torch.Generator().manual_seed(0),
        )
    finally:
        hook.remove()
    return time.perf_counter() - start[0]


def routing_cost_us(router, calls: int = 20000) -> float:
    """Microseconds the router's own work takes per call (timestep -> owner, config reads,
    the guidance hook), measured apart from the experts' compute: a noise-free estimate."""
    hooks = list(router._forward_pre_hooks.values())
    t = torch.tensor(500.0)
    start = time.perf_counter()
    for _ in range(calls):
        for hook in hooks:
            hook(router, (None, t), {})
        owners = {router.expert_index(x) for x in torch.as_tensor(t).flatten().tolist()}
        router.config.time_cond_proj_dim, router.config.in_channels, owners.pop()
    return (time.perf_counter() - start) / calls * 1e6


def peak_rss_mb(mode: str, folders: list[Path]) -> float:
    """Peak RSS of a fresh process that loads the K experts one way (see module docstring)."""
    code = f"""
import resource, sys
from pathlib import Path
folders = [Path(p) for p in {[str(f) for f in folders]!r}]
if {mode!r} == "router":
    from expertune.pipeline.routed import load_routed_pipeline
    pipe = load_routed_pipeline(folders)
else:
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    pipe = StableDiffusionXLPipeline.from_pretrained(folders[0], add_watermarker=False)
    extra = [UNet2DConditionModel.from_pretrained(f, subfolder="unet") for f in folders[1:]]
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--experts", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: least noise)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from diffusers import StableDiffusionXLPipeline
    from diffusers.utils import logging as diffusers_logging

    from expertune.models.tiny import build_tiny_sdxl
    from expertune.pipeline.routed import load_routed_pipeline, set_expert_guidance

    diffusers_logging.disable_progress_bar()
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_sdxl(Path(tmp) / "tiny", seed=0)
        folders = make_experts(model, Path(tmp), args.experts)
        routed = load_routed_pipeline(folders)
        set_expert_guidance(routed, scales=[5.0 + i for i in range(args.experts)])
        single = StableDiffusionXLPipeline.from_pretrained(folders[0], add_watermarker=False)
        for pipe in (routed, single):
            pipe.set_progress_bar_config(disable=True)
        e, ne, pooled, npooled = single.encode_prompt("a red circle")
        embeds = {
            "prompt_embeds": e,
            "negative_prompt_embeds": ne,
            "pooled_prompt_embeds": pooled,
            "negative_pooled_prompt_embeds": npooled,
        }
        timed(routed, embeds, 2), timed(single, embeds, 2)  # warm both up
        runs = {"router": [], "single": []}
        for r in range(args.rounds):  # alternate which goes first: neither always runs warm
            order = ("router", "single") if r % 2 == 0 else ("single", "router")
            for name in order:
                pipe = routed if name == "router" else single
                runs[name].append(timed(pipe, embeds, args.steps))
        per_call = routing_cost_us(routed.unet)
        router_rss = peak_rss_mb("router", folders)
        floor_rss = peak_rss_mb("by-hand", folders)
    k, steps = args.experts, args.steps
    best = {name: min(v) for name, v in runs.items()}
    median = {name: statistics.median(v) for name, v in runs.items()}
    for name, label in (("router", f"router ({k} experts)"), ("single", "single model")):
        print(
            f"{label:<20} best {best[name] * 1000:.1f} ms, median {median[name] * 1000:.1f} ms "
            f"for {steps} steps ({args.rounds} rounds)"
        )
    print(f"best_of_rounds_ratio {best['router'] / best['single']:.4f}")
    step_us = median["single"] / steps * 1e6
    share = 100 * per_call / step_us
    print(f"routing_us_per_call {per_call:.1f} ({share:.2f}% of a single-model step)")
    print(
        f"peak_rss_mb router {router_rss:.0f} one pipeline + {k - 1} UNets {floor_rss:.0f} "
        f"(ratio {router_rss / floor_rss:.3f})"
    )
    print(f"ratio_of_medians {median['router'] / median['single']:.4f}")
    paired = [a / b for a, b in zip(runs["router"], runs["single"], strict=True)]
    print(f"router_overhead_ratio {statistics.median(paired):.4f}")


if __name__ == "__main__":
    main()
