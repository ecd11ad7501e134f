"""LoRA export: diffusers' load_lora_weights on either file reproduces the merged UNet."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from export_support import make_expert
from safetensors import safe_open
from safetensors.torch import load_file

from expertune.export.lora import export_lora
from expertune.models.lora import add_lora, merge_lora, save_lora
from models.unet_support import unet_output

RANK, ALPHA = 4, 8.0
TOLERANCE = 1e-5  # UNet output; measured ~6e-7, against ~0.4 between base and LoRA


@pytest.fixture(scope="module")
def lora_expert(tiny_model_dir, tmp_path_factory):
    """A LoRA expert laid out as training saves it: adapter file beside the merged pipeline."""
    folder = make_expert(
        tiny_model_dir, tmp_path_factory.mktemp("lora") / "lora", model_type="lora"
    )
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    add_lora(unet, RANK, ALPHA)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # stand-in for training: B starts at zero
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=g) * 0.1)
    save_lora(unet, folder)
    merge_lora(unet).save_pretrained(folder / "unet")
    return folder


@pytest.fixture(scope="module")
def merged_output(lora_expert):
    return unet_output(UNet2DConditionModel.from_pretrained(lora_expert / "unet"))


@pytest.mark.parametrize("fmt", ["kohya", "diffusers"])
def test_load_lora_weights_reproduces_the_trained_unet(
    fmt, lora_expert, merged_output, tiny_model_dir, tmp_path
):
    out = export_lora(lora_expert, tmp_path / f"{fmt}.safetensors", format=fmt, dtype="fp32")
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model_dir)
    base = unet_output(pipe.unet)
    pipe.load_lora_weights(str(out.path))
    got = unet_output(pipe.unet)
    assert (got - merged_output).abs().max() <= TOLERANCE
    assert (base - merged_output).abs().max() > 100 * TOLERANCE  # the LoRA does matter
    assert (out.rank, out.alpha, out.modules) == (RANK, ALPHA, 32)  # 8 attentions x q,k,v,out


def test_kohya_layout_uses_original_sdxl_module_names(lora_expert, tmp_path):
    out = export_lora(lora_expert, tmp_path / "k.safetensors", format="kohya")
    state = load_file(out.path)
    modules = {k.split(".")[0] for k in state}
    assert all(m.startswith("lora_unet_") for m in modules)
    for m in modules:
        assert {f"{m}.lora_down.weight", f"{m}.lora_up.weight", f"{m}.alpha"} <= state.keys()
        assert state[f"{m}.alpha"].item() == ALPHA
        assert state[f"{m}.lora_down.weight"].shape[0] == RANK
        assert state[f"{m}.lora_up.weight"].dtype == torch.float16
    # down_blocks.1.attentions.0 -> input_blocks.3.1; mid_block.attentions.0 -> middle_block.1
    assert "lora_unet_input_blocks_3_1_transformer_blocks_0_attn2_to_out_0" in modules
    assert "lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q" in modules
    assert "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_v" in modules
    with safe_open(str(out.path), framework="pt") as fh:
        meta = fh.metadata()
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert (meta["ss_network_dim"], meta["ss_network_alpha"]) == ("4", "8.0")


def test_diffusers_layout_keeps_the_adapter_config(lora_expert, tmp_path):
    out = export_lora(lora_expert, tmp_path / "d.safetensors", format="diffusers", dtype="bf16")
    with safe_open(str(out.path), framework="pt") as fh:
        config = json.loads(fh.metadata()["lora_adapter_metadata"])
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys()}  # noqa: SIM118
    assert dtypes == {torch.bfloat16}
    assert (config["unet.r"], config["unet.lora_alpha"]) == (RANK, ALPHA)
