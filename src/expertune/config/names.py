"""Names a user may write -> TrainConfig field (flag) names, with "did you mean" help.

config.env uses SimpleTuner's env names (MODEL_NAME, LEARNING_RATE, ...); flags, JSON and
TOML keys use the field names themselves, plus a few SimpleTuner aliases.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable

from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError

EXTRA_ARGS_ENV = "TRAINER_EXTRA_ARGS"  # its value is split with shlex into flags

ENV_TO_FLAG: dict[str, str] = {
    "MODEL_TYPE": "model_type",
    "MODEL_FAMILY": "model_family",
    "MODEL_NAME": "pretrained_model_name_or_path",
    "USE_BITFIT": "use_bitfit",
    "USE_DORA": "use_dora",
    "LORA_RANK": "lora_rank",
    "LORA_ALPHA": "lora_alpha",
    "LEARNING_RATE": "learning_rate",
    "LR_SCHEDULE": "lr_scheduler",
    "LR_WARMUP_STEPS": "lr_warmup_steps",
    "TRAIN_BATCH_SIZE": "train_batch_size",
    "GRADIENT_ACCUMULATION_STEPS": "gradient_accumulation_steps",
    "USE_GRADIENT_CHECKPOINTING": "gradient_checkpointing",
    "MIXED_PRECISION": "mixed_precision",
    "MAX_NUM_STEPS": "max_train_steps",
    "NUM_EPOCHS": "num_train_epochs",
    "SEED": "seed",
    "OUTPUT_DIR": "output_dir",
    "CACHE_DIR": "cache_dir",
    "CHECKPOINTING_STEPS": "checkpointing_steps",
    "CHECKPOINT_STEPS": "checkpointing_steps",
    "CHECKPOINTING_LIMIT": "checkpoints_total_limit",
    "RESUME_CHECKPOINT": "resume_from_checkpoint",
    "REPORT_TO": "report_to",
    "RESOLUTION": "resolution",
    "DATALOADER_CONFIG": "data_backend_config",
    "INSTANCE_DIR": "instance_data_dir",
    # datasets (issue 3)
    "VAE_BATCH_SIZE": "vae_batch_size",
    "VALIDATION_STEPS": "validation_steps",
    "VALIDATION_PROMPT": "validation_prompt",
    "VALIDATION_NUM_INFERENCE_STEPS": "validation_num_inference_steps",
    "VALIDATION_GUIDANCE": "validation_guidance",
    "VALIDATION_GUIDANCE_RESCALE": "validation_guidance_rescale",
    "VALIDATION_SEED": "validation_seed",
}

FLAG_ALIASES: dict[str, str] = {
    "model_name": "pretrained_model_name_or_path",
    "checkpoint_steps": "checkpointing_steps",
    "num_epochs": "num_train_epochs",
}

FIELDS: tuple[str, ...] = tuple(TrainConfig.model_fields)
KNOWN_FLAGS: tuple[str, ...] = FIELDS + tuple(FLAG_ALIASES)


def _is_bool(annotation: object) -> bool:
    if annotation is bool:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return bool in typing.get_args(annotation)
    return False


BOOL_FLAGS: frozenset[str] = frozenset(
    name for name, field in TrainConfig.model_fields.items() if _is_bool(field.annotation)
)


def nearest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word`` (case-insensitive), or None if nothing is close."""
    by_lower = {c.lower(): c for c in candidates}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None


def flag_for_key(key: str, where: str) -> str:
    """The field for a flag or JSON/TOML key (``--key`` or ``key``), else a ConfigError."""
    name = key.removeprefix("--")
    name = FLAG_ALIASES.get(name, name)
    if name in FIELDS:
        return name
    guess = nearest(key.removeprefix("--"), KNOWN_FLAGS)
    hint = f" (did you mean --{guess}?)" if guess else " (see docs/config.md for the flags)"
    raise ConfigError(f"unknown flag --{key.removeprefix('--')} in {where}{hint}")


def flag_for_env(env_name: str, where: str) -> str:
    """The field for a config.env name, else a ConfigError suggesting the nearest name."""
    if env_name in ENV_TO_FLAG:
        return ENV_TO_FLAG[env_name]
    guess = nearest(env_name, [*ENV_TO_FLAG, EXTRA_ARGS_ENV])
    if env_name.lower() in FIELDS:
        hint = f"; write --{env_name.lower()}=... in {EXTRA_ARGS_ENV} instead"
    elif guess:
        hint = f" (did you mean {guess}?)"
    else:
        hint = f"; put other flags in {EXTRA_ARGS_ENV}, see docs/config.md for the names"
    raise ConfigError(f"unknown setting {env_name} in {where}{hint}")
