"""A diffusers SDXL folder -> one checkpoint in the original SDXL key layout.

`model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE), then the text encoders
(text_encoders.py): what ComfyUI's and A1111's checkpoint loaders and diffusers'
`from_single_file` read. Weights are loaded with safetensors only, renamed (not
recomputed), cast to the asked dtype and written atomically with modelspec metadata and,
for v-prediction experts, the `v_pred`/`ztsnr` markers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from expertune.export.expert import ExpertFolder, open_expert
from expertune.export.files import cast, check_target, parse_dtype, write_safetensors
from expertune.export.ldm_keys import is_vae_conv_attention, unet_key_map, vae_key_map
from expertune.export.markers import marker_tensors, modelspec
from expertune.export.text_encoders import (
    OPEN_CLIP_PREFIX,
    REFINER_OPEN_CLIP_PREFIX,
    clip_l_state_dict,
    open_clip_state_dict,
)

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."


@dataclass(frozen=True)
class SingleFileResult:
    path: Path
    tensors: int
    bytes: int
    markers: tuple[str, ...]


def unet_state_dict(expert: ExpertFolder) -> dict[str, torch.Tensor]:
    state = load_file(expert.weights("unet"))
    names = unet_key_map(expert.config("unet"), list(state))
    return {UNET_PREFIX + names[k]: v for k, v in state.items()}


def vae_state_dict(expert: ExpertFolder) -> dict[str, torch.Tensor]:
    state = load_file(expert.weights("vae"))
    names = vae_key_map(expert.config("vae"), list(state))
    out = {}
    for key, value in state.items():
        ldm = names[key]
        if is_vae_conv_attention(ldm) and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1)  # Linear -> 1x1 conv, as LDM stores it
        out[VAE_PREFIX + ldm] = value
    return out


def checkpoint_state_dict(expert: ExpertFolder) -> dict[str, torch.Tensor]:
    """Every weight of the pipeline under its original SDXL name, plus the markers."""
    state = {**unet_state_dict(expert), **vae_state_dict(expert)}
    if "text_encoder" in expert.family.text_encoders:
        state.update(clip_l_state_dict(load_file(expert.weights("text_encoder"))))
        prefix = OPEN_CLIP_PREFIX
    else:  # the refiner: OpenCLIP is its only (first) embedder
        prefix = REFINER_OPEN_CLIP_PREFIX
    state.update(open_clip_state_dict(load_file(expert.weights("text_encoder_2")), prefix))
    state.update(marker_tensors(expert))
    return state


def _resolution(expert: ExpertFolder) -> int:
    """Native resolution in pixels: latent sample size times the VAE's downsampling."""
    unet, vae = expert.config("unet"), expert.config("vae")
    factor = 2 ** (len(vae.get("block_out_channels", [0, 0, 0, 0])) - 1)
    return int(unet.get("sample_size", 128)) * factor


def export_single_file(
    expert_dir: str | Path, out: str | Path, *, dtype: str = "fp16", overwrite: bool = False
) -> SingleFileResult:
    """Write `expert_dir` as one original-layout checkpoint at `out`; returns what was written.

    Every check (folder, weights, output path, dtype) runs before the file is written.
    """
    torch_dtype = parse_dtype(dtype)
    out = Path(out)
    check_target(out, overwrite)
    expert = open_expert(expert_dir)
    state = cast(checkpoint_state_dict(expert), torch_dtype)
    metadata = modelspec(expert, resolution=_resolution(expert))
    metadata["expertune.dtype"] = dtype
    write_safetensors(out, state, metadata)
    markers = tuple(k for k in marker_tensors(expert))
    return SingleFileResult(out, len(state), out.stat().st_size, markers)
