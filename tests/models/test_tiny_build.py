"""The tiny SDXL model: deterministic, loadable by diffusers' SDXL pipelines, calibrated VAE."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

import expertune
from expertune.models.tiny import build_tiny_sdxl, procedural_images, to_pixels


def _files(folder):
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_same_seed_gives_byte_identical_folders(tiny_model_dir, tmp_path):
    again = build_tiny_sdxl(tmp_path / "again", seed=0)
    first, second = _files(tiny_model_dir), _files(again)
    assert first.keys() == second.keys()
    assert any(name.endswith(".safetensors") for name in first)
    assert [n for n in first if first[n] != second[n]] == []


def test_another_process_builds_the_same_bytes(tiny_model_dir, tmp_path):
    """Two jobs (stage one, stage two) build the model apart: hash seed and threads differ."""
    src = Path(expertune.__file__).parents[1]
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONHASHSEED": "7", "OMP_NUM_THREADS": "1"}
    code = f"from expertune.models.tiny import build_tiny_sdxl; build_tiny_sdxl({str(tmp_path)!r})"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True)
    first, second = _files(tiny_model_dir), _files(tmp_path)
    assert [n for n in first if first[n] != second.get(n)] == []


def test_another_seed_gives_other_weights(tiny_model_dir, tmp_path):
    other = build_tiny_sdxl(tmp_path / "other", seed=1)
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert (other / unet).read_bytes() != (tiny_model_dir / unet).read_bytes()
    assert json.loads((other / "expertune_tiny.json").read_text())["seed"] == 1


def test_generates_64px_with_the_base_pipeline(tiny_model_dir):
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model_dir)
    assert pipe.vae_scale_factor == 8
    out = pipe("a red circle", num_inference_steps=4, generator=torch.Generator().manual_seed(0))
    assert out.images[0].size == (64, 64)


def test_refines_64px_with_the_img2img_pipeline(tiny_model_dir):
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(tiny_model_dir)
    image = procedural_images(1)[0]
    out = pipe("a red circle", image=image, strength=0.5, num_inference_steps=4)
    assert out.images[0].size == (64, 64)


def _scaled_latents(folder, images):
    pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    with torch.no_grad():
        latents = pipe.vae.encode(to_pixels(images)).latent_dist.sample()
    return latents * pipe.vae.config.scaling_factor


def test_scaled_latents_have_unit_variance_on_the_calibration_images(tiny_model_dir):
    latents = _scaled_latents(tiny_model_dir, procedural_images())
    assert latents.std().item() == pytest.approx(1.0, abs=0.02)
    assert latents.mean().abs().item() < 0.05  # centred per channel as well


def test_user_calibration_images_set_the_scaling_factor(tiny_model_dir, tmp_path):
    images = procedural_images(8, seed=123)
    folder = build_tiny_sdxl(tmp_path / "calibrated", calibration_images=images)
    factor = json.loads((folder / "vae" / "config.json").read_text())["scaling_factor"]
    info = json.loads((folder / "expertune_tiny.json").read_text())
    assert info["vae_scaling_factor"] == factor
    assert info["calibration"] == "user images" and info["calibration_count"] == 8
    assert factor != pytest.approx(0.13025, rel=0.5)  # not SDXL's factor for real latents
    assert _scaled_latents(folder, images).std().item() == pytest.approx(1.0, abs=0.02)


def test_notes_say_what_it_is(tiny_model_dir):
    info = json.loads((tiny_model_dir / "expertune_tiny.json").read_text())
    assert info["seed"] == 0 and info["resolution"] == 64
    assert "build_tiny_sdxl(seed=0)" in (tiny_model_dir / "README.md").read_text()
