"""The pretrained parent `expertune/tiny-sdxl-shapes`: its VAE reconstructs held-out shape
images, its latents have unit variance, and it draws the colours its prompt names through
`expertune generate --model` (40 steps, default scheduler), held-out colour pairs
included; a shortened build from the same code still reaches a stated quality."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from expertune.app.shapes_parent import (
    ShapesRecipe,
    build_tiny_sdxl_shapes,
    prompt_colour_accuracy,
    reconstruction_psnr,
)
from expertune.cli import main
from expertune.data.shape_images import (
    ALL_PAIRS,
    HELD_OUT_PAIRS,
    ShapeSpec,
    draw_shape,
    grid_specs,
    sample_specs,
)
from expertune.evaluate.colour_check import check
from expertune.models.embedded import SHAPES_MODEL_NAME, shapes_model_folder
from expertune.models.tiny import to_pixels

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def parent():
    from diffusers import StableDiffusionXLPipeline

    from expertune.io import no_progress_bars

    with no_progress_bars():
        pipe = StableDiffusionXLPipeline.from_pretrained(shapes_model_folder())
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_vae_reconstructs_held_out_images_and_its_latents_have_unit_variance(parent):
    pixels = to_pixels([draw_shape(s) for s in sample_specs(128, seed=7, pairs=ALL_PAIRS)])
    assert reconstruction_psnr(parent.vae, pixels) >= 24.0
    with torch.no_grad():
        latents = parent.vae.encode(pixels).latent_dist.mean * parent.vae.config.scaling_factor
    assert abs(float(latents.std()) - 1.0) < 0.1 and abs(float(latents.mean())) < 0.1


def test_it_draws_the_colours_its_prompts_name(parent):
    grid = grid_specs()
    unseen = [s for s in grid if (s.foreground, s.background) in set(HELD_OUT_PAIRS)]
    assert prompt_colour_accuracy(parent, grid, seed=1) >= 0.9
    assert prompt_colour_accuracy(parent, unseen, seed=1) >= 0.8
    notes = json.loads((shapes_model_folder() / "expertune_tiny.json").read_text())
    assert notes["colour_accuracy_all"] >= 0.9 and notes["colour_accuracy_held_out"] >= 0.8


def test_generate_takes_the_reserved_name(tmp_path, capsys):
    specs = [ShapeSpec(fg, bg, "circle") for fg, bg in HELD_OUT_PAIRS[:3]]
    right = 0
    for index, spec in enumerate(specs):
        out = tmp_path / f"{index}.png"
        argv = ["generate", "--model", SHAPES_MODEL_NAME, "--prompt", spec.caption]
        assert main([*argv, "--out", str(out)]) == 0
        with Image.open(out) as image:
            right += check(image.convert("RGB"), spec.caption).correct
    assert right >= 2  # held-out pairs, one image each


def test_a_shortened_build_reaches_its_stated_quality(tmp_path):
    info = build_tiny_sdxl_shapes(tmp_path / "short", ShapesRecipe.short(), log=lambda m: None)
    assert (tmp_path / "short" / "model_index.json").is_file()
    assert info["vae_psnr_db"] >= SHORT_PSNR_DB
    assert info["unet_final_loss"] <= SHORT_UNET_LOSS


# The shortened build (ShapesRecipe.short(), about 2 minutes on 2 cores) measured 12.62 dB
# (a random VAE: about 9.3) and a final loss of 0.035 (about 0.9 at the start); it does not
# follow prompts yet (5 % colour accuracy, chance is 1.8 %): that needs the full recipe.
SHORT_PSNR_DB = 11.5
SHORT_UNET_LOSS = 0.06
