"""The embedded default: a tiny SDXL-architecture pipeline built offline, seeded, in seconds.

Same parts and conditioning as SDXL (text_time UNet, AutoencoderKL with 8x downsampling,
CLIPTextModel + CLIPTextModelWithProjection, Euler scheduler as SDXL ships it), small
enough to train on a 2-core CPU at 64 px. Weights are random but the VAE is calibrated:
its `scaling_factor` is 1 / std of its latents on real-looking images, as SDXL's 0.13025
was chosen for real latents, so the denoising task has unit-variance data (DESIGN.md,
"The embedded default").

`build_tiny_sdxl_refiner` builds the matching SDXL-refiner architecture (text_encoder_2
only, aesthetic score in the time ids) with the same VAE and text_encoder_2 as the tiny
base of the same seed, as SDXL 1.0's refiner shares them with its base.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from PIL import Image, ImageDraw
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

from expertune import __version__
from expertune.io import no_progress_bars
from expertune.models.family import SDXL, SDXL_REFINER, Family
from expertune.models.tokenizer import build_tiny_tokenizer, write_vocab_files

RESOLUTION = 64  # pixels; latents are 8x8
HIDDEN = 32  # width of both text encoders
TIME_EMBED_DIM = 8  # SDXL's addition_time_embed_dim, scaled down
POSTERIOR_LOGVAR = -12.0  # posterior std ~0.0025: nearly deterministic, like a trained VAE


def tiny_unet(family: Family = SDXL) -> UNet2DConditionModel:
    """SDXL's UNet layout (text_time conditioning, linear projections) at width 32/64.

    The family decides the conditioning widths: cross-attention over the concatenated
    hidden states of its text encoders, and its time ids (6 for SDXL, 5 for the refiner)
    embedded beside text_encoder_2's pooled embedding.
    """
    return UNet2DConditionModel(
        sample_size=RESOLUTION // 8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        norm_num_groups=8,
        use_linear_projection=True,
        cross_attention_dim=len(family.text_encoders) * HIDDEN,  # encoders' states, concatenated
        addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=family.num_time_ids * TIME_EMBED_DIM + HIDDEN,
    )


def tiny_vae(norm_num_groups: int = 8) -> AutoencoderKL:
    """Four blocks, so 8x downsampling like SDXL's VAE; the posterior made near-deterministic.

    The pretrained parent uses one norm group (app/shapes_parent.py): with 8 groups of 2
    channels, GroupNorm all but erases the mean colour of a flat image.
    """
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 32, 32, 32),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=norm_num_groups,
        sample_size=RESOLUTION,
        force_upcast=False,  # float32 throughout; SDXL's upcast guards float16 overflow
    )
    with torch.no_grad():  # a random VAE's log-variance is ~0, i.e. latents would be noise
        vae.quant_conv.weight[4:].zero_()
        vae.quant_conv.bias[4:].fill_(POSTERIOR_LOGVAR)
    return vae


def tiny_text_encoder(tokenizer: CLIPTokenizer, *, projection: bool) -> torch.nn.Module:
    """A 2-layer CLIP text encoder; with `projection`, SDXL's text_encoder_2 (pooled embeds)."""
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        intermediate_size=2 * HIDDEN,
        projection_dim=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=tokenizer.model_max_length,
        hidden_act="gelu" if projection else "quick_gelu",  # as in SDXL's two encoders
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def sdxl_scheduler() -> EulerDiscreteScheduler:
    """The scheduler config SDXL base 1.0 ships with."""
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        timestep_spacing="leading",
        steps_offset=1,
        interpolation_type="linear",
        use_karras_sigmas=False,
    )


def procedural_images(n: int = 16, *, size: int = RESOLUTION, seed: int = 0) -> list[Image.Image]:
    """Deterministic gradients with a few coloured shapes: stand-ins for a calibration set."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        a, b = rng.integers(0, 256, size=(2, 3))
        ramp = np.linspace(0.0, 1.0, size)[:, None, None]
        grid = a * (1 - ramp) + b * ramp
        pixels = np.broadcast_to(grid, (size, size, 3)).astype(np.uint8)
        if rng.random() < 0.5:  # vertical or horizontal gradient
            pixels = pixels.transpose(1, 0, 2)
        image = Image.fromarray(np.ascontiguousarray(pixels))
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(1, 4))):
            x0, y0 = rng.integers(0, size * 3 // 4, size=2)
            w, h = rng.integers(size // 8, size // 2, size=2)
            box, fill = (
                (int(x0), int(y0), int(x0 + w), int(y0 + h)),
                tuple(map(int, rng.integers(0, 256, 3))),
            )
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=fill)
        images.append(image)
    return images


def to_pixels(images: list[Image.Image], size: int = RESOLUTION) -> torch.Tensor:
    """Centre-crop to square, resize to `size` and scale to [-1, 1]; returns (N, 3, H, W)."""
    arrays = []
    for image in images:
        image = image.convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((size, size))
        arrays.append(np.asarray(image, dtype=np.float32) / 127.5 - 1.0)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)


@torch.no_grad()
def encode_means(vae: AutoencoderKL, images: list[Image.Image], batch: int = 32) -> torch.Tensor:
    """Posterior means (unscaled latents) of `images`, encoded in batches."""
    chunks = [images[i : i + batch] for i in range(0, len(images), batch)]
    return torch.cat([vae.encode(to_pixels(c)).latent_dist.mean for c in chunks])


@torch.no_grad()
def center_latents(vae: AutoencoderKL, images: list[Image.Image]) -> None:
    """Shift the encoder output so `images` give zero-mean latents per channel.

    The decoder's first conv absorbs the shift, so decode(encode(x)) is unchanged; the
    shift is rounded so that builds stay byte-identical across thread counts.
    """
    shift = torch.round(encode_means(vae, images).mean(dim=(0, 2, 3)) * 1e4) / 1e4
    vae.quant_conv.bias[: shift.numel()] -= shift
    vae.post_quant_conv.bias += vae.post_quant_conv.weight[:, :, 0, 0] @ shift


def _seeded_modules(seed: int, tokenizer: CLIPTokenizer, tokenizer_2: CLIPTokenizer) -> dict:
    """The base's random modules, drawn from one seeded stream in a fixed order, and then
    the refiner's UNet from the same stream.

    Every build draws all of them, so the VAE and text_encoder_2 of a refiner are the very
    tensors of the base of the same seed (and the base's bytes never depend on whether a
    refiner exists); the few unused tiny modules cost milliseconds.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {
            "unet": tiny_unet(SDXL),
            "vae": tiny_vae(),
            "text_encoder": tiny_text_encoder(tokenizer, projection=False),
            "text_encoder_2": tiny_text_encoder(tokenizer_2, projection=True),
            "refiner_unet": tiny_unet(SDXL_REFINER),
        }


def calibrate_vae(vae: AutoencoderKL, images: list[Image.Image]) -> dict:
    """Centre the latents of `images` and set `scaling_factor` = 1 / their std (in place).

    Returns the calibration numbers for the notes (factor, latent mean and std, count).
    """
    center_latents(vae, images)
    latents = encode_means(vae, images)
    mean, std = float(latents.mean()), float(latents.std())
    scaling_factor = float(f"{1.0 / std:.6g}")
    vae.register_to_config(scaling_factor=scaling_factor)
    return {
        "vae_scaling_factor": scaling_factor,
        "calibration_count": len(images),
        "calibration_latent_mean": round(mean, 6),
        "calibration_latent_std": round(std, 6),
    }


def _tiny_parts(seed: int, calibration_images: list[Image.Image] | None) -> tuple[dict, dict]:
    """(modules and tokenizers, notes) shared by both builders: seeded, VAE calibrated."""
    tokenizer = build_tiny_tokenizer()
    tokenizer_2 = build_tiny_tokenizer(pad_token="!")  # SDXL's tokenizer_2 pads with "!"
    parts = _seeded_modules(seed, tokenizer, tokenizer_2)
    parts |= {"tokenizer": tokenizer, "tokenizer_2": tokenizer_2}
    images = calibration_images or procedural_images(seed=seed)
    info = {
        "expertune_version": __version__,
        "seed": seed,
        "resolution": RESOLUTION,
        "vocab_size": len(tokenizer),
        "calibration": "user images" if calibration_images else "procedural_images()",
        **calibrate_vae(parts["vae"], images),
    }
    return parts, info


def _save(pipe, out: Path, info: dict) -> Path:
    """save_pretrained, CLIP's slow-tokenizer files beside each tokenizer, and the notes."""
    with no_progress_bars():
        pipe.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer", "tokenizer_2"):
        if getattr(pipe, name, None) is not None:
            write_vocab_files(getattr(pipe, name), out / name)
    _write_notes(out, info)
    return out


def build_tiny_sdxl(
    out_dir: str | Path,
    *,
    seed: int = 0,
    calibration_images: list[Image.Image] | None = None,
) -> Path:
    """Build the tiny SDXL pipeline into `out_dir` (a diffusers folder) and return its path.

    Same `seed` gives byte-identical weights. The VAE's `scaling_factor` is set so that
    scaled latents of `calibration_images` (default: `procedural_images()`) have unit std.
    """
    parts, info = _tiny_parts(seed, calibration_images)
    pipe = StableDiffusionXLPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        text_encoder_2=parts["text_encoder_2"],
        tokenizer=parts["tokenizer"],
        tokenizer_2=parts["tokenizer_2"],
        unet=parts["unet"],
        scheduler=sdxl_scheduler(),
        add_watermarker=False,
    )
    what = "tiny random-weight SDXL-architecture pipeline built by expertune"
    return _save(pipe, Path(out_dir), {"what": what, "builder": "build_tiny_sdxl", **info})


def build_tiny_sdxl_refiner(
    out_dir: str | Path,
    *,
    seed: int = 0,
    calibration_images: list[Image.Image] | None = None,
) -> Path:
    """Build the tiny SDXL-refiner pipeline into `out_dir` and return its path.

    Laid out as stabilityai/stable-diffusion-xl-refiner-1.0: a StableDiffusionXLImg2Img
    pipeline without text_encoder/tokenizer, `requires_aesthetics_score` (the UNet's 5 time
    ids end in an aesthetic score) and `force_zeros_for_empty_prompt` off. Its VAE (same
    `calibration_images`), text_encoder_2 and tokenizer_2 equal those of
    `build_tiny_sdxl(seed=seed)`, so a base and a refiner share latents and encoders.
    """
    parts, info = _tiny_parts(seed, calibration_images)
    pipe = StableDiffusionXLImg2ImgPipeline(
        vae=parts["vae"],
        text_encoder=None,
        text_encoder_2=parts["text_encoder_2"],
        tokenizer=None,
        tokenizer_2=parts["tokenizer_2"],
        unet=parts["refiner_unet"],
        scheduler=sdxl_scheduler(),
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
        add_watermarker=False,
    )
    what = "tiny random-weight SDXL-refiner-architecture pipeline built by expertune"
    info = {"what": what, "builder": "build_tiny_sdxl_refiner", **info}
    return _save(pipe, Path(out_dir), info)


def _write_notes(out: Path, info: dict) -> None:
    """expertune_tiny.json for programs, README.md for people."""
    (out / "expertune_tiny.json").write_text(json.dumps(info, indent=2) + "\n")
    kind = "SDXL refiner" if info["builder"] == "build_tiny_sdxl_refiner" else "SDXL"
    (out / "README.md").write_text(
        f"# expertune tiny {kind}\n\n"
        f"A tiny {kind}-architecture diffusers pipeline with random weights, built offline by\n"
        f"`expertune.models.tiny.{info['builder']}(seed={info['seed']})` for tests and the demo.\n"
        "It generates noise-like images until trained; it is not a pretrained model.\n\n"
        f"- resolution: {info['resolution']} px (8x8 latents), vocabulary: "
        f"{info['vocab_size']} BPE tokens\n"
        f"- VAE scaling_factor {info['vae_scaling_factor']} = 1 / std of the latents of "
        f"{info['calibration_count']} calibration images ({info['calibration']})\n"
    )
