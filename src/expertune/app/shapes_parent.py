"""`expertune/tiny-sdxl-shapes`: the tiny SDXL pretrained on `data/shape_images.py`.

The random tiny model proves the plumbing but draws noise. This one is the seed's real
setting in miniature, a pretrained parent: its VAE is fitted to the procedural shape
domain (held-out PSNR measured at 64 px) and its UNet is pretrained over all 1000
timesteps on `a {colour} {shape} on a {colour} background`, with `HELD_OUT_PAIRS` never
shown, so that `generate --model` draws the colours its prompt names (measured with
`evaluate/colour_check.py` through diffusers' own SDXL pipeline, 40 steps, default
scheduler). Architecture, tokenizers and text encoders are those of the random tiny
model of the same seed (`models/tiny.py`); the text encoders stay frozen, as SDXL's do.

Everything is drawn from seeded generators in a fixed order, so a recipe and a seed give
one model; `ShapesRecipe.short()` is the quick build the tests run.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionXLPipeline

from expertune.data.shape_images import (
    ALL_PAIRS,
    HELD_OUT_PAIRS,
    SHAPES,
    ShapeSpec,
    draw_shape,
    grid_specs,
    sample_specs,
)
from expertune.models.tiny import (
    RESOLUTION,
    _save,
    _seeded_modules,
    calibrate_vae,
    sdxl_scheduler,
    tiny_vae,
    to_pixels,
)
from expertune.models.tokenizer import build_tiny_tokenizer
from expertune.schedule.loss import DenoisingLoss

SHAPES_MODEL_NAME = "expertune/tiny-sdxl-shapes"


@dataclass(frozen=True)
class ShapesRecipe:
    """How the parent is built; the defaults are the published build."""

    seed: int = 0
    images: int = 4096  # training images drawn from the training pairs
    vae_steps: int = 2400  # reconstruction steps ...
    vae_crop_steps: int = 1800  # ... the first of them on 32 px crops (4x cheaper)
    vae_lr: float = 2e-3
    vae_batch: int = 16
    unet_steps: int = 4000
    unet_lr: float = 1e-3
    unet_batch: int = 32
    caption_dropout: float = 0.1  # zeroed embeddings, as the pipeline's empty negative prompt
    snr_gamma: float = 5.0

    @classmethod
    def short(cls) -> ShapesRecipe:
        """The shortened build the tests run (about a tenth of the steps, 2-4 minutes)."""
        return cls(images=512, vae_steps=300, vae_crop_steps=250, unet_steps=400)


def _cosine(step: int, total: int, peak: float) -> float:
    """Cosine decay from `peak` to peak/20 after a 5 % linear warmup."""
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def shapes_vae() -> AutoencoderKL:
    """The tiny VAE (8x downsampling) with one norm group, so flat colours keep their mean."""
    return tiny_vae(norm_num_groups=1)


def fit_vae(vae: AutoencoderKL, pixels: torch.Tensor, recipe: ShapesRecipe, log) -> None:
    """Minimise reconstruction MSE of the posterior mean, first on 32 px crops, then whole.

    The log-variance rows of quant_conv stay frozen, so the posterior stays sharp.
    """
    params = [p for n, p in vae.named_parameters() if not n.startswith("quant_conv")]
    params += [vae.quant_conv.weight, vae.quant_conv.bias]
    optimizer = torch.optim.AdamW(params, lr=recipe.vae_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    for step in range(recipe.vae_steps):
        for group in optimizer.param_groups:
            group["lr"] = _cosine(step, recipe.vae_steps, recipe.vae_lr)
        x = pixels[torch.randint(0, len(pixels), (recipe.vae_batch,), generator=gen)]
        if step < recipe.vae_crop_steps:
            y0, x0 = (int(v) * 8 for v in torch.randint(0, 5, (2,), generator=gen))
            x = x[:, :, y0 : y0 + 32, x0 : x0 + 32]
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample
        loss = (rec - x).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():  # keep the posterior near-deterministic
            vae.quant_conv.weight.grad[4:] = 0
            vae.quant_conv.bias.grad[4:] = 0
        optimizer.step()
        if (step + 1) % max(1, recipe.vae_steps // 10) == 0:
            log(f"vae step {step + 1}/{recipe.vae_steps}: mse {loss.item():.5f}")


@torch.no_grad()
def reconstruction_psnr(vae: AutoencoderKL, pixels: torch.Tensor) -> float:
    """PSNR in dB of decode(encode(x)) on pixels in [-1, 1], measured on the [0, 1] scale."""
    errors = []
    for chunk in pixels.split(64):
        rec = vae.decode(vae.encode(chunk).latent_dist.mean).sample.clamp(-1, 1)
        errors.append(((rec - chunk) / 2).pow(2).flatten(1).mean(dim=1))
    return 10 * math.log10(1.0 / float(torch.cat(errors).mean()))


@torch.no_grad()
def _prompt_table(pipe: StableDiffusionXLPipeline, captions: list[str]) -> tuple:
    """(prompt_embeds, pooled) for `captions`, exactly as the pipeline encodes a prompt."""
    embeds, _, pooled, _ = pipe.encode_prompt(
        captions, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    return embeds, pooled


def pretrain_unet(
    pipe: StableDiffusionXLPipeline, specs: list[ShapeSpec], recipe: ShapesRecipe, log
) -> float:
    """Epsilon-prediction training over all 1000 timesteps on the VAE's scaled latents;
    returns the mean loss of the last tenth of the steps."""
    unet, vae = pipe.unet, pipe.vae
    latents = []
    with torch.no_grad():
        for chunk in range(0, len(specs), 64):
            pixels = to_pixels([draw_shape(s) for s in specs[chunk : chunk + 64]])
            latents.append(vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor)
    latents = torch.cat(latents)
    captions = sorted({s.caption for s in specs})
    embeds, pooled = _prompt_table(pipe, captions)
    row = torch.tensor([captions.index(s.caption) for s in specs])
    time_ids = torch.tensor(
        [[RESOLUTION, RESOLUTION, 0, 0, RESOLUTION, RESOLUTION]] * recipe.unet_batch
    )
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    loss_fn = DenoisingLoss(scheduler, "epsilon", snr_gamma=recipe.snr_gamma)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=recipe.unet_lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(recipe.seed + 2)
    tail = []  # the last tenth's losses, read once at the end
    unet.train()
    for step in range(recipe.unet_steps):
        for group in optimizer.param_groups:
            group["lr"] = _cosine(step, recipe.unet_steps, recipe.unet_lr)
        pick = torch.randint(0, len(latents), (recipe.unet_batch,), generator=gen)
        x0, rows = latents[pick], row[pick]
        keep = (torch.rand(recipe.unet_batch, generator=gen) >= recipe.caption_dropout).float()
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(
            0, scheduler.config.num_train_timesteps, (recipe.unet_batch,), generator=gen
        )
        pred = unet(
            loss_fn.noisy(x0, noise, t),
            t,
            encoder_hidden_states=embeds[rows] * keep[:, None, None],
            added_cond_kwargs={"text_embeds": pooled[rows] * keep[:, None], "time_ids": time_ids},
        ).sample
        loss = loss_fn(pred, x0, noise, t)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= recipe.unet_steps - max(1, recipe.unet_steps // 10):
            tail.append(loss.detach())
        if (step + 1) % max(1, recipe.unet_steps // 10) == 0:
            log(f"unet step {step + 1}/{recipe.unet_steps}: loss {loss.item():.4f}")
    unet.eval()
    return round(float(torch.stack(tail).mean()), 5)


@torch.no_grad()
def prompt_colour_accuracy(
    pipe, specs: list[ShapeSpec], *, steps: int = 40, seed: int = 0
) -> float:
    """Share of `specs` whose image, drawn as `expertune generate --model` draws it (its
    default scheduler and guidance, `steps` steps), shows both colours its prompt names."""
    from expertune.app.generate import (
        DEFAULT_GUIDANCE_RESCALE,
        DEFAULT_GUIDANCE_SCALE,
        DEFAULT_SCHEDULER,
    )
    from expertune.evaluate.colour_check import colour_accuracy
    from expertune.pipeline.schedulers import make_scheduler

    own = pipe.scheduler
    pipe.scheduler = make_scheduler(DEFAULT_SCHEDULER, own.config)
    try:
        prompts = [s.caption for s in specs]
        images = pipe(
            prompts,
            num_inference_steps=steps,
            guidance_scale=float(DEFAULT_GUIDANCE_SCALE),
            guidance_rescale=float(DEFAULT_GUIDANCE_RESCALE),
            generator=torch.Generator().manual_seed(seed),
            height=RESOLUTION,
            width=RESOLUTION,
        ).images
    finally:
        pipe.scheduler = own
    return colour_accuracy(images, prompts)


def measure_quality(pipe: StableDiffusionXLPipeline, seed: int = 0) -> dict:
    """The parent's stated quality: VAE PSNR on held-out images, colour accuracy of generations."""
    held_out = sample_specs(256, seed=seed + 100, pairs=ALL_PAIRS)
    pixels = to_pixels([draw_shape(s) for s in held_out])
    held = set(HELD_OUT_PAIRS)
    grid = grid_specs()
    unseen = [s for s in grid if (s.foreground, s.background) in held]
    return {
        "vae_psnr_db": round(reconstruction_psnr(pipe.vae, pixels), 2),
        "colour_accuracy_all": round(prompt_colour_accuracy(pipe, grid, seed=seed), 4),
        "colour_accuracy_held_out": round(prompt_colour_accuracy(pipe, unseen, seed=seed), 4),
    }


def build_tiny_sdxl_shapes(
    out_dir: str | Path, recipe: ShapesRecipe = ShapesRecipe(), log: Callable = print
) -> dict:
    """Build the pretrained parent into `out_dir` (a diffusers folder); return its notes."""
    started = time.monotonic()
    torch.manual_seed(recipe.seed)
    tokenizer, tokenizer_2 = build_tiny_tokenizer(), build_tiny_tokenizer(pad_token="!")
    parts = _seeded_modules(recipe.seed, tokenizer, tokenizer_2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        vae = shapes_vae()
    specs = sample_specs(recipe.images, seed=recipe.seed)
    fit_vae(vae, to_pixels([draw_shape(s) for s in specs]), recipe, log)
    log(f"vae fitted after {time.monotonic() - started:.0f}s")
    calibration = calibrate_vae(vae, [draw_shape(s) for s in specs[:512]])
    pipe = StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=parts["text_encoder"].eval(),
        text_encoder_2=parts["text_encoder_2"].eval(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        unet=parts["unet"],
        scheduler=sdxl_scheduler(),
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    unet_loss = pretrain_unet(pipe, specs, recipe, log)
    log(f"unet pretrained after {time.monotonic() - started:.0f}s")
    quality = measure_quality(pipe, recipe.seed)
    log(f"quality: {quality}")
    info = {
        "what": "tiny SDXL-architecture pipeline pretrained on expertune's shape images",
        "builder": "build_tiny_sdxl_shapes",
        "seed": recipe.seed,
        "resolution": RESOLUTION,
        "vocab_size": len(tokenizer),
        "recipe": asdict(recipe),
        "held_out_pairs": [list(p) for p in HELD_OUT_PAIRS],
        "shapes": list(SHAPES),
        "build_seconds": round(time.monotonic() - started, 1),
        "unet_final_loss": unet_loss,
        "calibration": "shape_images.sample_specs()",
        **calibration,
        **quality,
    }
    _save(pipe, Path(out_dir), info)
    _write_readme(Path(out_dir), info)
    return info


def _write_readme(out: Path, info: dict) -> None:
    """README.md for people: what the parent is, how it was built, what it measured."""
    held = ", ".join(f"{fg} on {bg}" for fg, bg in info["held_out_pairs"])
    (out / "README.md").write_text(
        "# expertune/tiny-sdxl-shapes\n\n"
        "A tiny SDXL-architecture diffusers pipeline pretrained by expertune on procedural\n"
        "images captioned `a {colour} {shape} on a {colour} background` (shapes: "
        f"{', '.join(info['shapes'])}).\nBuilt by `python -m expertune.app.shapes_parent OUT` "
        f"(recipe and seed in expertune_tiny.json), in {info['build_seconds']} s.\n\n"
        f"- VAE reconstruction PSNR on held-out images: {info['vae_psnr_db']} dB at "
        f"{info['resolution']} px; scaling_factor {info['vae_scaling_factor']}\n"
        f"- prompt-colour accuracy, 40 steps, default scheduler: {info['colour_accuracy_all']:.1%}"
        f" of all colour pairs, {info['colour_accuracy_held_out']:.1%} of the held-out pairs\n"
        f"- colour pairs never seen in training: {held}\n"
    )


def remeasure(folder: Path) -> dict:
    """Measure a built parent again and rewrite its notes (after the checker or defaults change)."""
    from expertune.io import no_progress_bars, write_text_atomic

    with no_progress_bars():
        pipe = StableDiffusionXLPipeline.from_pretrained(folder, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    notes = folder / "expertune_tiny.json"
    info = json.loads(notes.read_text())
    info |= measure_quality(pipe, info["seed"])
    write_text_atomic(notes, json.dumps(info, indent=2) + "\n")
    _write_readme(folder, info)
    return info


def main(argv: list[str] | None = None) -> int:
    """`python -m expertune.app.shapes_parent OUT [--short] [--measure]`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m expertune.app.shapes_parent")
    parser.add_argument("out", type=Path, help="folder to write the diffusers pipeline into")
    parser.add_argument("--short", action="store_true", help="the tests' shortened recipe")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", action="store_true", help="only re-measure a built OUT")
    args = parser.parse_args(argv)
    keys = ("vae_psnr_db", "colour_accuracy_all", "colour_accuracy_held_out")
    if args.measure:
        info = remeasure(args.out)
    else:
        recipe = ShapesRecipe.short() if args.short else ShapesRecipe()
        recipe = ShapesRecipe(**(asdict(recipe) | {"seed": args.seed}))
        started = time.monotonic()

        def log(message: str) -> None:
            print(f"[{time.monotonic() - started:6.0f}s] {message}", flush=True)

        info = build_tiny_sdxl_shapes(args.out, recipe, log=log)
    print(json.dumps({k: info[k] for k in keys}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
