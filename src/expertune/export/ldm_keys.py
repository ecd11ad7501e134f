"""Diffusers UNet and VAE weight names -> the original (LDM/SGM) checkpoint names.

The inverse of what `from_single_file` reads (`convert_ldm_unet_checkpoint`,
`convert_ldm_vae_checkpoint` in diffusers' single_file_utils). The fixed names come from
diffusers' own table `DIFFUSERS_TO_LDM_MAPPING`; the block numbering is derived from the
model's config rather than hard-coded for SDXL's three levels, so the same code maps
SDXL, the refiner and the tiny test model. Names only: no tensors here.
"""

from __future__ import annotations

from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

from expertune.errors import ModelReferenceError

# Inside one ResNet block: diffusers name -> LDM name (the inverse of the renames in
# diffusers' update_unet_resnet_ldm_to_diffusers, which has them inline, not as a table).
UNET_RESNET_PARTS = (
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
)
# Inside the VAE's mid-block attention (inverse of update_vae_attentions_ldm_to_diffusers).
VAE_ATTENTION_PARTS = (
    ("group_norm", "norm"),
    ("to_q", "q"),
    ("to_k", "k"),
    ("to_v", "v"),
    ("to_out.0", "proj_out"),
)
VAE_CONV_ATTENTION = ("q.weight", "k.weight", "v.weight", "proj_out.weight")  # 1x1 convs in LDM


def _layers_per_block(config: dict, part: str) -> int:
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ModelReferenceError(
            f"{part}/config.json has layers_per_block={layers!r}; the original SDXL layout "
            "needs one number for every block (export the model as a diffusers folder instead)"
        )
    return layers


def unet_prefixes(config: dict, keys: list[str]) -> list[tuple[str, str, bool]]:
    """(diffusers prefix, LDM prefix, is a ResNet) for every block of a UNet2DConditionModel.

    LDM numbers its blocks flat: input_blocks.0 is conv_in, then per level `layers`
    (ResNet .0, attention .1) pairs and the downsampler; output_blocks hold layers+1 pairs
    per level, the upsampler after the attention (.2) or after the ResNet (.1).
    """
    layers = _layers_per_block(config, "unet")
    if config.get("mid_block_type", "UNetMidBlock2DCrossAttn") != "UNetMidBlock2DCrossAttn":
        raise ModelReferenceError(
            f"unet/config.json has mid_block_type={config['mid_block_type']!r}; the original "
            "SDXL layout has a cross-attention mid block"
        )
    pairs: list[tuple[str, str, bool]] = []
    for i in range(len(config["down_block_types"])):
        for j in range(layers):
            flat = 1 + i * (layers + 1) + j
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{flat}.0.", True))
            pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{flat}.1.", False))
        flat = (i + 1) * (layers + 1)
        pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{flat}.0.op.", False))
    pairs.append(("mid_block.resnets.0.", "middle_block.0.", True))
    pairs.append(("mid_block.attentions.0.", "middle_block.1.", False))
    pairs.append(("mid_block.resnets.1.", "middle_block.2.", True))
    for i in range(len(config["up_block_types"])):
        for j in range(layers + 1):
            flat = i * (layers + 1) + j
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{flat}.0.", True))
            pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{flat}.1.", False))
        has_attention = any(k.startswith(f"up_blocks.{i}.attentions.") for k in keys)
        flat = i * (layers + 1) + layers
        slot = 2 if has_attention else 1
        pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{flat}.{slot}.", False))
    return pairs


def _fixed_unet_names(config: dict) -> dict[str, str]:
    table = DIFFUSERS_TO_LDM_MAPPING["unet"]
    names = dict(table["layers"])
    if config.get("addition_embed_type") == "text_time":
        names.update(table["addition_embed_type"])
    if config.get("class_embed_type") in ("timestep", "projection"):
        names.update(table["class_embed_type"])
    return names


def _rename_parts(rest: str, parts: tuple[tuple[str, str], ...]) -> str:
    """`rest` with its first dotted component renamed by `parts` (exact component match)."""
    for old, new in parts:
        if rest.startswith(old + "."):
            return new + rest[len(old) :]
    return rest


def unet_key_map(config: dict, keys: list[str]) -> dict[str, str]:
    """{diffusers key: LDM key (without "model.diffusion_model.")} for every UNet weight."""
    fixed = _fixed_unet_names(config)
    prefixes = unet_prefixes(config, keys)
    mapping = {}
    for key in keys:
        if key in fixed:
            mapping[key] = fixed[key]
            continue
        for old, new, resnet in prefixes:
            if key.startswith(old):
                rest = key[len(old) :]
                mapping[key] = new + (_rename_parts(rest, UNET_RESNET_PARTS) if resnet else rest)
                break
        else:
            raise ModelReferenceError(
                f"unet weight {key!r} has no place in the original SDXL layout; "
                "export this model as a diffusers folder instead"
            )
    return mapping


def vae_prefixes(config: dict) -> list[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(diffusers prefix, LDM prefix, inner renames) for every block of an AutoencoderKL.

    LDM counts the decoder's levels from the bottom (up.0 is the last to run), diffusers
    from the top; ResNet shortcuts are `nin_shortcut` there.
    """
    shortcut = (("conv_shortcut", "nin_shortcut"),)
    levels = len(config["up_block_types"])
    pairs = []
    for i in range(len(config["down_block_types"])):
        pairs.append((f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.", shortcut))
        pairs.append(
            (f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample.", ())
        )
    for i in range(levels):
        ldm = levels - 1 - i
        pairs.append((f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{ldm}.block.", shortcut))
        pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{ldm}.upsample.", ()))
    for side in ("encoder", "decoder"):
        for j in range(2):
            pairs.append((f"{side}.mid_block.resnets.{j}.", f"{side}.mid.block_{j + 1}.", shortcut))
        pairs.append(
            (f"{side}.mid_block.attentions.0.", f"{side}.mid.attn_1.", VAE_ATTENTION_PARTS)
        )
    return pairs


def vae_key_map(config: dict, keys: list[str]) -> dict[str, str]:
    """{diffusers key: LDM key (without "first_stage_model.")} for every VAE weight."""
    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    prefixes = vae_prefixes(config)
    mapping = {}
    for key in keys:
        if key in fixed:
            mapping[key] = fixed[key]
            continue
        for old, new, parts in prefixes:
            if key.startswith(old):
                rest = key[len(old) :]
                if old.endswith(".resnets."):  # "<j>.<part>...": rename inside block j
                    index, _, inner = rest.partition(".")
                    rest = f"{index}.{_rename_parts(inner, parts)}"
                else:
                    rest = _rename_parts(rest, parts)
                mapping[key] = new + rest
                break
        else:
            raise ModelReferenceError(
                f"vae weight {key!r} has no place in the original SDXL layout; "
                "export this model as a diffusers folder instead"
            )
    return mapping


def is_vae_conv_attention(ldm_key: str) -> bool:
    """Whether an LDM VAE weight is a 1x1 conv there (a Linear weight in diffusers)."""
    return ".mid.attn_1." in ldm_key and ldm_key.endswith(VAE_CONV_ATTENTION)
