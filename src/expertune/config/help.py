"""`expertune train --help` / `config show --help`: every flag, grouped, from the schema.

Types and defaults come from TrainConfig's fields, the one-line notes from the comment
beside each field in schema.py, so the help cannot drift from what is accepted. Imports
no torch (the schema does not).
"""

from __future__ import annotations

import inspect
import re
import types
import typing

from pydantic_core import PydanticUndefined

from expertune.config import schema
from expertune.config.schema import TrainConfig

GROUPS: dict[str, tuple[str, ...]] = {
    "model": (
        "pretrained_model_name_or_path",
        "init_from",
        "model_family",
        "model_type",
        "lora_rank",
        "lora_alpha",
        "lora_type",
        "lycoris_config",
        "base_model_precision",
        "quantize_via",
        "controlnet",
        "controlnet_model_name_or_path",
        "use_dora",
        "use_bitfit",
        "mixed_precision",
        "gradient_checkpointing",
        "torch_compile",
        "torch_compile_backend",
        "allow_pickle_weights",
    ),
    "data": (
        "data_backend_config",
        "instance_data_dir",
        "resolution",
        "resolution_type",
        "minimum_image_size",
        "aspect_bucket_alignment",
        "caption_dropout_probability",
        "train_batch_size",
        "vae_batch_size",
        "dataloader_num_workers",
        "cache_dir",
    ),
    "band": (
        "refiner_training",
        "refiner_training_strength",
        "refiner_training_invert_schedule",
        "band_edges",
        "band_index",
        "expert_name",
    ),
    "schedule": (
        "prediction_type",
        "rescale_betas_zero_snr",
        "training_scheduler_timestep_spacing",
        "snr_gamma",
        "noise_offset",
        "loss_type",
        "huber_c",
        "huber_schedule",
    ),
    "optimizer": (
        "optimizer",
        "learning_rate",
        "lr_scheduler",
        "lr_warmup_steps",
        "lr_num_cycles",
        "lr_power",
        "max_train_steps",
        "num_train_epochs",
        "gradient_accumulation_steps",
        "max_grad_norm",
        "use_ema",
        "ema_decay",
        "adam_beta1",
        "adam_beta2",
        "adam_weight_decay",
        "adam_epsilon",
        "seed",
        "skip_nonfinite_steps",
    ),
    "validation": (
        "validation_steps",
        "validation_prompt",
        "validation_negative_prompt",
        "validation_resolution",
        "num_validation_images",
        "validation_num_inference_steps",
        "validation_guidance",
        "validation_guidance_rescale",
        "validation_seed",
        "validation_using_datasets",
        "validation_refiner",
        "validation_chain",
        "evaluation_type",
        "pretrained_evaluation_model_name_or_path",
        "eval_split",
        "eval_timesteps",
        "eval_full_range",
        "eval_steps_interval",
    ),
    "checkpoints": (
        "output_dir",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "resume_from_checkpoint",
        "push_to_hub",
        "hub_model_id",
        "push_checkpoints_to_hub",
    ),
    "logging": ("logging_steps", "report_to", "tracker_project_name", "tracker_run_name"),
}

_COMMENT = re.compile(r"^    (\w+): .*?#\s*(.+)$")


def field_notes() -> dict[str, str]:
    """The comment written beside each field in schema.py, by field name."""
    notes = {}
    for line in inspect.getsource(schema.TrainConfig).splitlines():
        m = _COMMENT.match(line)
        if m and m.group(1) in TrainConfig.model_fields:
            notes[m.group(1)] = m.group(2).strip()
    return notes


def type_text(annotation: object) -> str:
    """int, float, text, bool, a|b|c for choices; `or unset` when None is allowed."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [type_text(a) for a in args if a is not type(None)]
        return " | ".join(kinds)
    if typing.get_origin(annotation) is typing.Literal:
        return "|".join(str(a) for a in args)
    names = {int: "int", float: "float", str: "text", bool: "bool"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def default_text(name: str) -> str:
    default = TrainConfig.model_fields[name].default
    if default is PydanticUndefined:
        return "required"
    if default is None:
        return "not set"
    return str(default).lower() if isinstance(default, bool) else str(default)


def flag_help(width: int = 100) -> str:
    """The grouped listing: one line per flag, `--name TYPE (default: X)  note`."""
    notes = field_notes()
    out = ["training flags (= JSON/TOML keys; config.env names in docs/config.md):"]
    for group, names in GROUPS.items():
        out.append(f"\n{group}:")
        for name in names:
            field = TrainConfig.model_fields[name]
            head = f"  --{name} {type_text(field.annotation)} (default: {default_text(name)})"
            note = notes.get(name, "")
            line = f"{head}  {note}" if note else head
            out.append(line if len(line) <= width or not note else f"{head}\n      {note}")
    return "\n".join(out)
