"""The two text encoders in the original SDXL layout.

CLIP-L (`text_encoder`) keeps transformers' names under `conditioner.embedders.0.transformer.`
(always with the `text_model.` level that ComfyUI and A1111 look for, which transformers
>= 5.6 no longer saves for CLIPTextModel). OpenCLIP bigG (`text_encoder_2`) goes back to
open_clip's names under `conditioner.embedders.1.model.` (`.0.` in the refiner): q/k/v
fused into one `in_proj`, and the projection a plain matrix, transposed against
transformers' Linear weight. The renames are diffusers' own `DIFFUSERS_TO_LDM_MAPPING`
"openclip" table, applied the other way.
"""

from __future__ import annotations

import torch
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

from expertune.errors import ModelReferenceError

CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."
QKV = ("q_proj", "k_proj", "v_proj")


def _with_text_model(key: str) -> str:
    """transformers' CLIP key with its `text_model.` level (older transformers save it)."""
    if key.startswith(("text_model.", "text_projection.")):
        return key
    return "text_model." + key


def clip_l_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModel weights -> `conditioner.embedders.0.transformer.text_model.*`."""
    return {CLIP_L_PREFIX + _with_text_model(k): v for k, v in state.items()}


def _open_clip_layer_name(key: str) -> str:
    """`text_model.encoder.layers.3.mlp.fc1.weight` -> `transformer.resblocks.3.mlp.c_fc.weight`."""
    renames = DIFFUSERS_TO_LDM_MAPPING["openclip"]["transformer"]
    for diffusers_part, ldm_part in renames.items():
        if not diffusers_part.startswith("transformer."):  # those are whole-key aliases
            key = key.replace(diffusers_part, ldm_part)
    return "transformer." + key


def open_clip_state_dict(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection weights -> open_clip's layout under `prefix`."""
    state = {_with_text_model(k): v for k, v in state.items()}
    fixed = DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"]
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    for key, value in state.items():
        if key in fixed:
            ldm = fixed[key]
            out[prefix + ldm] = value.T.contiguous() if ldm == "text_projection" else value
            continue
        if not key.startswith("text_model.encoder.layers."):
            raise ModelReferenceError(
                f"text_encoder_2 weight {key!r} has no place in open_clip's layout; "
                "export this model as a diffusers folder instead"
            )
        head, _, leaf = key.rpartition(".")  # leaf: weight | bias
        attn, _, proj = head.rpartition(".")
        if proj in QKV:
            fused.setdefault(attn, {}).setdefault(leaf, {})[proj] = value
        else:
            out[prefix + _open_clip_layer_name(key)] = value
    for attn, leaves in fused.items():
        for leaf, parts in leaves.items():
            if set(parts) != set(QKV):
                raise ModelReferenceError(
                    f"text_encoder_2 attention {attn} lacks one of q/k/v {leaf}; the weights are "
                    "incomplete: save the model again"
                )
            name = _open_clip_layer_name(attn) + f".in_proj_{leaf}"
            out[prefix + name] = torch.cat([parts[p] for p in QKV])
    if prefix + "text_projection" not in out:
        raise ModelReferenceError(
            "text_encoder_2 has no text_projection; SDXL's second encoder must be a "
            "CLIPTextModelWithProjection"
        )
    return out
