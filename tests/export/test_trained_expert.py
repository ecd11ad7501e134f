"""End to end: what `expertune train` saves exports, and the exported files load back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from expertune.app.demo import prepare_workdir
from expertune.cli import main

pytestmark = pytest.mark.slow


def _inputs():
    g = torch.Generator().manual_seed(0)
    return {
        "sample": torch.randn(2, 4, 8, 8, generator=g),
        "timestep": torch.tensor([900, 100]),
        "encoder_hidden_states": torch.randn(2, 77, 64, generator=g),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(2, 32, generator=g),
            "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2),
        },
    }


@torch.no_grad()
def _out(unet):
    return unet(**_inputs()).sample


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
    trained = _out(UNet2DConditionModel.from_pretrained(out / "unet"))
    assert (_out(pipe.unet) - trained).abs().max() <= 1e-5

    single = tmp_path / "single.safetensors"
    assert main(["export", str(out), "--single-file", str(single), "--dtype", "fp32"]) == 0
    state = load_file(single)
    merged = load_file(out / "unet/diffusion_pytorch_model.safetensors")
    assert torch.equal(
        state["model.diffusion_model.input_blocks.0.0.weight"], merged["conv_in.weight"]
    )
