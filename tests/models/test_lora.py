"""LoRA through peft: saved in diffusers' format, reloaded by the pipeline, merged exactly."""

from __future__ import annotations

import pytest
import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from expertune.models.lora import add_lora, lora_state_dict, merge_lora, save_lora
from models.unet_support import unet_output


@pytest.fixture
def unet(tiny_model_dir):
    return UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")


def _train_a_little(unet):
    """Stand-in for training: random LoRA up-projections (they start at zero)."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.05)


def test_new_lora_is_trainable_and_changes_nothing(unet):
    before = unet_output(unet)
    add_lora(unet, rank=4, alpha=8)
    trainable = [n for n, p in unet.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    torch.testing.assert_close(unet_output(unet), before)


def test_save_load_and_merge_round_trip(unet, tiny_model_dir, tmp_path):
    base = unet_output(unet)
    add_lora(unet, rank=4, alpha=8)  # alpha != rank: the saved metadata must carry the scale
    _train_a_little(unet)
    adapted = unet_output(unet)
    assert (adapted - base).abs().max() > 1e-2

    path = save_lora(unet, tmp_path)
    assert path.name == "pytorch_lora_weights.safetensors"
    assert set(load_file(path)) == {f"unet.{k}" for k in lora_state_dict(unet)}
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model_dir)
    pipe.load_lora_weights(tmp_path)
    torch.testing.assert_close(unet_output(pipe.unet), adapted)

    merged = merge_lora(unet)
    assert merged is unet and not any("lora" in k for k in unet.state_dict())
    torch.testing.assert_close(unet_output(unet), adapted, atol=1e-5, rtol=1e-4)


def test_lora_init_is_seeded_and_leaves_the_global_rng_alone(tiny_model_dir):
    from diffusers import UNet2DConditionModel

    def adapter(seed: int) -> dict:
        unet = UNet2DConditionModel.from_pretrained(tiny_model_dir, subfolder="unet")
        add_lora(unet, rank=4, alpha=4, seed=seed)
        return lora_state_dict(unet)

    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    a, b, c = adapter(0), adapter(0), adapter(1)
    assert torch.equal(before, torch.random.get_rng_state())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if "lora_A" in k or "down" in k)
