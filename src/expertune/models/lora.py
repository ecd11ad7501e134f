"""LoRA on the UNet's attention projections through peft, saved in diffusers' format.

The saved file is what `StableDiffusionXLPipeline.load_lora_weights(dir)` reads, with the
adapter config (rank, alpha) in its metadata so the loaded scale equals the trained one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict

TARGET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")  # attention projections
ADAPTER = "default"
WEIGHT_NAME = "pytorch_lora_weights.safetensors"


def add_lora(
    unet, rank: int, alpha: float, seed: int = 0, modules_to_save: list[str] | None = None
) -> None:
    """Freeze `unet` (or a ControlNet) and add a trainable LoRA (B initialised to zero:
    output unchanged); `modules_to_save` are trained whole beside it.

    peft draws `lora_A` from torch's global generator; it is forked and seeded from `seed`
    here, so one config gives the same adapter every run and the caller's RNG is untouched.
    """
    unet.requires_grad_(False)
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        init_lora_weights="gaussian",
        target_modules=list(TARGET_MODULES),
        modules_to_save=modules_to_save,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.add_adapter(config, adapter_name=ADAPTER)


def lora_state_dict(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The adapter's weights with diffusers' key names (`...to_q.lora_A.weight`)."""
    peft_state = get_peft_model_state_dict(unet, adapter_name=ADAPTER)
    return convert_state_dict_to_diffusers(peft_state)


def save_lora(
    unet: UNet2DConditionModel, out_dir: str | Path, weight_name: str = WEIGHT_NAME
) -> Path:
    """Write `out_dir/<weight_name>` (diffusers' default name unless told); returns its path."""
    out = Path(out_dir)
    StableDiffusionXLPipeline.save_lora_weights(
        out,
        unet_lora_layers=lora_state_dict(unet),
        unet_lora_adapter_metadata=unet.peft_config[ADAPTER].to_dict(),
        weight_name=weight_name,
        safe_serialization=True,
    )
    return out / weight_name


def merge_lora(unet: UNet2DConditionModel) -> UNet2DConditionModel:
    """Fuse the LoRA into the base weights and drop the adapter, in place: a plain UNet
    again, to save as a full pipeline. Returns `unet` for chaining."""
    unet.fuse_lora(lora_scale=1.0)
    unet.unload_lora()
    return unet
