"""End to end: what `expertune train` saves exports, and the exported files load back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from expertune.app.demo import prepare_workdir
from expertune.cli import main
from models.unet_support import unet_output

pytestmark = pytest.mark.slow


def test_trained_lora_expert_exports_to_kohya_and_single_file(tmp_path: Path):
    work = tmp_path / "work"
    prepare_workdir(work, 3, images=6)
    out = tmp_path / "lora"
    env = str(work / "config/stage1.env")
    flags = ["--model_type=lora", "--lora_rank=4", "--max_train_steps=2", "--learning_rate=1e-2"]
    assert main(["train", "--config", env, f"--output_dir={out}", *flags]) == 0

    kohya = tmp_path / "kohya.safetensors"
    assert main(["export", str(out), "--lora", str(kohya), "--dtype", "fp32"]) == 0
    pipe = StableDiffusionXLPipeline.from_pretrained(work / "tiny-model")
    pipe.load_lora_weights(str(kohya))
    trained = unet_output(UNet2DConditionModel.from_pretrained(out / "unet"))
    assert (unet_output(pipe.unet) - trained).abs().max() <= 1e-5

    single = tmp_path / "single.safetensors"
    assert main(["export", str(out), "--single-file", str(single), "--dtype", "fp32"]) == 0
    state = load_file(single)
    merged = load_file(out / "unet/diffusion_pytorch_model.safetensors")
    assert torch.equal(
        state["model.diffusion_model.input_blocks.0.0.weight"], merged["conv_in.weight"]
    )
