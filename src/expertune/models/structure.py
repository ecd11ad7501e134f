"""A model folder's config files checked against its family, before any weight is loaded.

A folder whose model_index.json says SDXL can still hold a UNet of another shape (an
SD1.5 UNet copied in by hand): loading it works and the first forward pass dies with a
matrix shape error. The UNet's config says enough to refuse it at once: SDXL's UNet is
conditioned with `addition_embed_type: text_time`, its cross-attention width is the text
encoders' hidden sizes together, and its added embedding takes the time ids and the
pooled text embedding.
"""

from __future__ import annotations

import json
from pathlib import Path

from expertune.errors import ModelReferenceError
from expertune.models.family import get_family

FIX = "point MODEL_NAME at a diffusers SDXL model folder"


def read_json_object(path: Path, what: str) -> dict:
    """The JSON object in `path`; a one-line ModelReferenceError (`what` names the model)
    when the file is unreadable, not JSON or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as err:
        raise ModelReferenceError(
            f"{what}: {path.name} cannot be read ({err.strerror}); {FIX}"
        ) from None
    except UnicodeDecodeError:
        raise ModelReferenceError(f"{what}: {path} is not UTF-8 text; {FIX}") from None
    except json.JSONDecodeError as err:
        raise ModelReferenceError(
            f"{what}: {path} is not valid JSON (line {err.lineno}: {err.msg}); {FIX}"
        ) from None
    if not isinstance(data, dict):
        raise ModelReferenceError(
            f"{what}: {path} holds a JSON {type(data).__name__}, not an object; {FIX}"
        )
    return data


def check_unet_config(path: Path, family: str, name: str) -> None:
    """Refuse a UNet whose config does not fit `family`'s conditioning (module docstring)."""
    fam = get_family(family)
    what = f"MODEL_NAME {name!r}"
    unet = read_json_object(path / "unet" / "config.json", what)
    shape = (
        f"addition_embed_type {unet.get('addition_embed_type')}, cross_attention_dim "
        f"{unet.get('cross_attention_dim')}"
    )
    if unet.get("addition_embed_type") != "text_time":
        raise ModelReferenceError(
            f"{what}: unet/config.json is not an SDXL UNet ({shape}; SDXL's is text_time, "
            f"an SD1.x/2.x UNet has none); {FIX}"
        )
    encoders = [_config_or_none(path / part / "config.json") for part in fam.text_encoders]
    if all(encoders):
        width = sum(int(c.get("hidden_size", 0)) for c in encoders)
        if unet.get("cross_attention_dim") != width:
            raise ModelReferenceError(
                f"{what}: unet/config.json has cross_attention_dim "
                f"{unet.get('cross_attention_dim')}, but the text encoders give {width} "
                f"({' + '.join(fam.text_encoders)}); the UNet is from another model: {FIX}"
            )
        pooled = int(encoders[-1].get("projection_dim", 0))
        time_ids = int(unet.get("addition_time_embed_dim") or 0) * fam.num_time_ids
        added = unet.get("projection_class_embeddings_input_dim")
        if added != time_ids + pooled:
            raise ModelReferenceError(
                f"{what}: unet/config.json expects an added embedding of {added}, but a "
                f"{family} model gives {time_ids + pooled} ({fam.num_time_ids} time ids and "
                f"the pooled text embedding); the UNet is from another family: {FIX}"
            )


def vae_downsampling(path: Path, name: str) -> int:
    """The VAE's downsampling factor (8 for SDXL), from vae/config.json alone."""
    vae = read_json_object(path / "vae" / "config.json", f"MODEL_NAME {name!r}")
    return 2 ** (len(vae.get("block_out_channels") or [0, 0, 0, 0]) - 1)


def _config_or_none(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
