"""Model families, loading (local folders and the hub, safetensors only), the tiny model, LoRA."""

from expertune.models.family import FAMILIES, SDXL, SDXL_REFINER, Family, detect_family, get_family
from expertune.models.load import Components, fingerprint, load_components, resolve_model_path
from expertune.models.lora import add_lora, lora_state_dict, merge_lora, save_lora
from expertune.models.tiny import build_tiny_sdxl, build_tiny_sdxl_refiner

__all__ = [
    "FAMILIES",
    "SDXL",
    "SDXL_REFINER",
    "Components",
    "Family",
    "add_lora",
    "build_tiny_sdxl",
    "build_tiny_sdxl_refiner",
    "detect_family",
    "fingerprint",
    "get_family",
    "load_components",
    "lora_state_dict",
    "merge_lora",
    "resolve_model_path",
    "save_lora",
]
