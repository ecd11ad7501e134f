"""The key layout at SDXL 1.0's real sizes (weights on the meta device: names and shapes only).

The tiny model has two levels and one layer per block; SDXL has three levels, two layers,
10-deep transformers and a 32-layer OpenCLIP. diffusers' own single-file readers must
invert the layout there too, and the names ComfyUI detects SDXL by must be present.
"""

from __future__ import annotations

import pytest
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import (
    CHECKPOINT_KEY_NAMES,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
)
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from expertune.export.ldm_keys import unet_key_map, vae_key_map
from expertune.export.text_encoders import OPEN_CLIP_PREFIX, open_clip_state_dict

SDXL_UNET = {
    "sample_size": 128,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
    "use_linear_projection": True,
}


@pytest.fixture(scope="module")
def sdxl_parts():
    with init_empty_weights():
        unet = UNet2DConditionModel(**SDXL_UNET)
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
        )
        config = CLIPTextConfig(
            hidden_size=1280,
            intermediate_size=5120,
            num_hidden_layers=32,
            num_attention_heads=20,
            projection_dim=1280,
        )
        clip_g = CLIPTextModelWithProjection(config)
    return unet, vae, clip_g


def _same(back: dict, state: dict) -> bool:
    return back.keys() == state.keys() and all(back[k].shape == state[k].shape for k in state)


def test_unet_layout_inverts_at_sdxl_size(sdxl_parts):
    unet = sdxl_parts[0]
    state = unet.state_dict()
    names = unet_key_map(dict(unet.config), list(state))
    ldm = {names[k]: v for k, v in state.items()}
    back = convert_ldm_unet_checkpoint(
        {"model.diffusion_model." + k: v for k, v in ldm.items()}, unet.config
    )
    assert _same(back, state)
    # spelled out: the original numbering (3 blocks per level, upsampler after attention)
    assert names["down_blocks.2.attentions.1.transformer_blocks.9.attn2.to_k.weight"] == (
        "input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight"
    )
    assert names["up_blocks.0.upsamplers.0.conv.weight"] == "output_blocks.2.2.conv.weight"
    assert names["up_blocks.1.upsamplers.0.conv.weight"] == "output_blocks.5.2.conv.weight"
    assert names["down_blocks.1.downsamplers.0.conv.weight"] == "input_blocks.6.0.op.weight"
    assert (
        names["up_blocks.2.resnets.2.conv_shortcut.weight"]
        == "output_blocks.8.0.skip_connection.weight"
    )


def test_vae_layout_inverts_at_sdxl_size(sdxl_parts):
    vae = sdxl_parts[1]
    state = vae.state_dict()
    names = vae_key_map(dict(vae.config), list(state))
    ldm = {"first_stage_model." + names[k]: v for k, v in state.items()}
    assert _same(convert_ldm_vae_checkpoint(ldm, vae.config), state)
    assert (
        names["decoder.up_blocks.0.upsamplers.0.conv.weight"] == "decoder.up.3.upsample.conv.weight"
    )
    assert (
        names["encoder.mid_block.attentions.0.to_out.0.weight"]
        == "encoder.mid.attn_1.proj_out.weight"
    )


def test_open_clip_layout_inverts_at_sdxl_size(sdxl_parts):
    clip_g = sdxl_parts[2]
    state = clip_g.state_dict()
    ldm = open_clip_state_dict(state, OPEN_CLIP_PREFIX)
    assert CHECKPOINT_KEY_NAMES["xl_base"] in ldm  # how diffusers (and ComfyUI) spot SDXL
    assert ldm[OPEN_CLIP_PREFIX + "transformer.resblocks.31.attn.in_proj_weight"].shape == (
        3840,
        1280,
    )
    back = convert_open_clip_checkpoint(clip_g, ldm, prefix=OPEN_CLIP_PREFIX)
    assert _same(back, state)  # values are checked on the tiny model (test_single_file.py)
