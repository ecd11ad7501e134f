"""A LoRA expert's adapter as a file for other tools: diffusers' layout or kohya's.

The expert's OUTPUT_DIR holds the adapter in diffusers' layout beside the merged pipeline
(models/lora.py `save_lora`). Kohya's layout is what sd-scripts writes for SDXL and
ComfyUI, A1111 and diffusers' `load_lora_weights` read: one module per
`lora_unet_<original SDXL module path, dots as underscores>` with `.lora_down.weight`
(peft's A), `.lora_up.weight` (B) and `.alpha`, where alpha / rank is the scale the
adapter was trained with.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from expertune.errors import ConfigError, ModelReferenceError
from expertune.export.expert import ExpertFolder, open_expert
from expertune.export.files import cast, check_target, parse_dtype, write_safetensors
from expertune.export.ldm_keys import unet_key_map
from expertune.export.markers import modelspec

FORMATS = ("kohya", "diffusers")
ADAPTER_METADATA = "lora_adapter_metadata"  # where diffusers keeps the peft config
_LORA_KEY = re.compile(
    r"^(?:unet\.)?(?P<module>.+)\.(?P<part>lora\.down|lora\.up|lora_A|lora_B)\.weight$"
)
_DOWN = ("lora.down", "lora_A")
_DOWN_SUFFIXES = ("lora_down.weight", "lora.down.weight", "lora_A.weight")


@dataclass(frozen=True)
class LoraResult:
    path: Path
    format: str
    modules: int
    rank: int
    alpha: float
    bytes: int


def lora_file(expert: ExpertFolder) -> Path:
    """The expert's diffusers-layout adapter; one-line errors for a full or broken expert."""
    from expertune.models.lora import WEIGHT_NAME

    path = expert.path / WEIGHT_NAME
    if expert.model_type != "lora":
        raise ConfigError(
            f"{expert.path} is a {expert.model_type} expert, not a LoRA one; export it with "
            "--single-file instead of --lora"
        )
    if not path.is_file():
        raise ModelReferenceError(
            f"{path} is missing: the LoRA expert's adapter weights; train the expert again"
        )
    return path


def _adapter_config(metadata: dict[str, str]) -> dict:
    """The peft LoraConfig saved with the adapter (keys without their `unet.` prefix)."""
    raw = metadata.get(ADAPTER_METADATA)
    if not raw:
        return {}
    config = json.loads(raw)
    return {k.removeprefix("unet."): v for k, v in config.items()}


def _scale(config: dict, rank: int) -> float:
    """The factor peft multiplies B @ A by (alpha / r, or alpha / sqrt(r) with rsLoRA)."""
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise ConfigError(
            "this LoRA has per-module ranks or alphas (rank_pattern/alpha_pattern); export it "
            "with --format diffusers"
        )
    alpha = float(config.get("lora_alpha", rank))
    r = int(config.get("r", rank))
    return alpha / (math.sqrt(r) if config.get("use_rslora") else r)


def read_adapter(path: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    """{module: {"down": A, "up": B}} of a diffusers/peft UNet LoRA file, and its metadata."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata() or {}
        for key in fh.keys():  # noqa: SIM118 (safe_open is not iterable)
            match = _LORA_KEY.match(key)
            if not match:
                raise ModelReferenceError(
                    f"{path} holds {key!r}, not a UNet LoRA down/up weight; only UNet LoRAs "
                    "(what expertune trains) can be exported to kohya's layout"
                )
            part = "down" if match["part"] in _DOWN else "up"
            modules.setdefault(match["module"], {})[part] = fh.get_tensor(key)
    return modules, metadata


def kohya_state_dict(
    expert: ExpertFolder, path: Path, dtype: torch.dtype
) -> tuple[dict, int, float]:
    """The adapter renamed to kohya's layout; returns (state, rank, alpha)."""
    modules, metadata = read_adapter(path)
    config = _adapter_config(metadata)
    if config.get("use_dora"):
        raise ConfigError("this LoRA is a DoRA; export it with --format diffusers")
    with safe_open(str(expert.weights("unet")), framework="pt") as fh:
        unet_keys = list(fh.keys())
    names = unet_key_map(expert.config("unet"), [*unet_keys, *(f"{m}.weight" for m in modules)])
    state: dict[str, torch.Tensor] = {}
    rank, alpha = 0, 0.0
    for module, parts in modules.items():
        if set(parts) != {"down", "up"}:
            raise ModelReferenceError(f"{path}: module {module} lacks its down or up weight")
        name = "lora_unet_" + names[f"{module}.weight"].removesuffix(".weight").replace(".", "_")
        rank = parts["down"].shape[0]
        alpha = _scale(config, rank) * rank
        state[f"{name}.lora_down.weight"] = parts["down"].to(dtype).contiguous()
        state[f"{name}.lora_up.weight"] = parts["up"].to(dtype).contiguous()
        state[f"{name}.alpha"] = torch.tensor(alpha, dtype=torch.float32)
    return state, rank, alpha


def export_lora(
    expert_dir: str | Path,
    out: str | Path,
    *,
    format: str = "kohya",
    dtype: str = "fp16",
    overwrite: bool = False,
) -> LoraResult:
    """Write a LoRA expert's adapter at `out` in `format`; every check runs first."""
    if format not in FORMATS:
        raise ConfigError(f"--format {format!r} is not one of {', '.join(FORMATS)}")
    torch_dtype = parse_dtype(dtype)
    out = Path(out)
    check_target(out, overwrite)
    expert = open_expert(expert_dir)
    source = lora_file(expert)
    metadata = modelspec(expert, adapter="lora")
    metadata["expertune.dtype"] = dtype
    if format == "kohya":
        state, rank, alpha = kohya_state_dict(expert, source, torch_dtype)
        metadata |= {
            "ss_network_module": "networks.lora",
            "ss_network_dim": str(rank),
            "ss_network_alpha": str(alpha),
            "ss_base_model_version": "sdxl_base_v1-0",
        }
    else:
        modules, source_metadata = read_adapter(source)
        with safe_open(str(source), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
        state = cast(tensors, torch_dtype)
        if ADAPTER_METADATA in source_metadata:
            metadata[ADAPTER_METADATA] = source_metadata[ADAPTER_METADATA]
        rank = next(iter(modules.values()))["down"].shape[0] if modules else 0
        alpha = float(_adapter_config(source_metadata).get("lora_alpha", rank))
    if not state:
        raise ModelReferenceError(f"{source} holds no LoRA weights; train the expert again")
    write_safetensors(out, state, metadata)
    count = sum(1 for k in state if k.endswith(_DOWN_SUFFIXES))
    return LoraResult(out, format, count, rank, alpha, out.stat().st_size)
