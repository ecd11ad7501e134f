"""ControlNet training (SimpleTuner's `controlnet: true`): the trained module beside the
frozen UNet.

The ControlNet starts as a copy of the UNet's encoder (`ControlNetModel.from_unet`, its
output convolutions zero-initialised, so training starts from the UNet's own prediction)
or from a diffusers ControlNet folder. With a LoRA, the adapter goes on the attention
projections, and the conditioning embedding and the zero convolutions are trained whole
(peft `modules_to_save`): with a LoRA on the attention projections alone, the
zero-initialised output convolutions would stay zero, the residuals with them, and no
gradient would ever reach the adapter.

The published ControlNet is the LoRA merged in: a plain diffusers folder that
`ControlNetModel.from_pretrained` loads, with the adapter file beside it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ControlNetModel
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

from expertune.models.lora import ADAPTER, add_lora

FOLDER = "controlnet"  # OUTPUT_DIR/controlnet: the published ControlNet
ADAPTER_FILE = "pytorch_lora_weights.safetensors"


def make_controlnet(unet, path: str | None = None, seed: int = 0) -> ControlNetModel:
    """A ControlNet for `unet`: from the diffusers folder `path`, else from the UNet.

    `from_unet` draws the conditioning embedding's first layers from torch's global
    generator: it is forked and seeded from `seed`, so one config makes the same
    ControlNet every run (a resume and a straight run start alike).
    """
    if path:
        return ControlNetModel.from_pretrained(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ControlNetModel.from_unet(unet)


def trained_whole(controlnet: ControlNetModel) -> list[str]:
    """The modules a ControlNet LoRA trains whole: the conditioning embedding and every
    zero convolution (each of `controlnet_down_blocks` by name: peft wraps modules, and
    the ControlNet iterates over that list)."""
    downs = [f"controlnet_down_blocks.{i}" for i in range(len(controlnet.controlnet_down_blocks))]
    return ["controlnet_cond_embedding", *downs, "controlnet_mid_block"]


def add_controlnet_lora(controlnet: ControlNetModel, rank: int, alpha: float, seed: int) -> None:
    """Freeze `controlnet`; add a LoRA on its attention projections, and train its
    conditioning embedding and zero convolutions whole (module docstring)."""
    add_lora(controlnet, rank, alpha, seed, modules_to_save=trained_whole(controlnet))


def controlnet_residuals(controlnet, noisy, timesteps, batch: dict, cond: torch.Tensor):
    """(down residuals, mid residual) of `controlnet` for one batch."""
    down, mid = controlnet(
        noisy,
        timesteps,
        encoder_hidden_states=batch["prompt_embeds"],
        added_cond_kwargs={
            "text_embeds": batch["pooled_prompt_embeds"],
            "time_ids": batch["time_ids"],
        },
        controlnet_cond=cond.to(noisy.dtype),
        return_dict=False,
    )
    return down, mid


def save_adapter(controlnet: ControlNetModel, folder: Path) -> Path:
    """The adapter (LoRA and the whole-trained modules), peft's keys, with its config."""
    import json

    state = get_peft_model_state_dict(controlnet, adapter_name=ADAPTER)
    config = controlnet.peft_config[ADAPTER].to_dict()
    metadata = {"lora_adapter_metadata": json.dumps(config, default=list)}
    path = folder / ADAPTER_FILE
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, path, metadata)
    return path


def merged_copy(controlnet: ControlNetModel) -> ControlNetModel:
    """A plain ControlNet with the trained weights: the LoRA merged, the whole-trained
    modules' trained copies in place. `controlnet` itself is left as it is."""
    plain = ControlNetModel.from_config(controlnet.config)
    if not getattr(controlnet, "peft_config", None):
        plain.load_state_dict(controlnet.state_dict())
        return plain
    state = {}
    for name, value in controlnet.state_dict().items():
        if "lora_" in name or ".original_module." in name:
            continue
        state[name.replace(".modules_to_save.default.", ".").replace(".base_layer.", ".")] = value
    # LoRA: W' = W + peft's own delta weight (scale * B @ A) on every adapted layer
    for name, module in controlnet.named_modules():
        if ADAPTER in getattr(module, "lora_A", {}):
            key = name.replace(".modules_to_save.default", "") + ".weight"
            with torch.no_grad():
                delta = module.get_delta_weight(ADAPTER)
            state[key] = state[key] + delta.to(state[key].dtype)
    plain.load_state_dict(state, strict=True)
    return plain


def save_controlnet(controlnet: ControlNetModel, out: Path, lora: bool) -> Path:
    """`out/controlnet/`: the trained ControlNet (LoRA merged), plus the adapter file."""
    folder = Path(out) / FOLDER
    merged_copy(controlnet).save_pretrained(folder, safe_serialization=True)
    if lora:
        save_adapter(controlnet, folder)
    return folder
