"""Names a user may write -> TrainConfig field (flag) names, with "did you mean" help.

config.env uses SimpleTuner's env names (MODEL_NAME, LEARNING_RATE, ...); flags, JSON and
TOML keys use the field names themselves, plus a few SimpleTuner aliases.
"""

from __future__ import annotations

import difflib
import logging
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field

from expertune.config import simpletuner
from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError

log = logging.getLogger(__name__)

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

FLAG_ALIASES: dict[str, str] = dict(simpletuner.ALIASES)

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


# A hint must name the same setting, misspelt: close enough that difflib's ratio is
# at least this (``learnig_rate`` -> learning_rate is 0.96; ``use_ema`` -> use_dora,
# 0.67, is a different setting and gets no hint).
TYPO_CUTOFF = 0.85


def _squash(word: str) -> str:
    return word.lower().replace("-", "_").strip("_")


def nearest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate that ``word`` is a misspelling of (case and dashes ignored), or None."""
    by_squashed = {_squash(c): c for c in candidates}
    squashed = _squash(word)
    if squashed in by_squashed:
        return by_squashed[squashed]
    found = difflib.get_close_matches(squashed, list(by_squashed), n=1, cutoff=TYPO_CUTOFF)
    return by_squashed[found[0]] if found else None


@dataclass
class KeyCheck:
    """Resolves every key of one source, collecting all refusals into one ConfigError.

    SimpleTuner keys listed in config/simpletuner.py are aliases, accepted no-ops (a
    one-line notice each) or refusals with their reason; other unknown keys get a hint
    only when they are a misspelling of one of our flags.
    """

    where: str
    problems: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def flag(self, key: str, value: object) -> str | None:
        """The field ``key`` sets, or None (a no-op, or a problem recorded for finish)."""
        name = key.removeprefix("--")
        name = FLAG_ALIASES.get(name, name)
        if name in FIELDS:
            return name
        known = simpletuner.KEYS.get(name)
        if known is not None and known.accepts(value):
            self.notices.append(simpletuner.notice(name, value))
        elif known is not None:
            self.problems.append("--" + simpletuner.refusal(name, value))
        else:
            guess = nearest(name, KNOWN_FLAGS)
            self.problems.append(f"--{name}" + (f" (did you mean --{guess}?)" if guess else ""))
        return None

    def finish(self) -> None:
        """Log the notices; raise one ConfigError naming every refused key."""
        for line in self.notices:
            log.info("%s (%s)", line, self.where)
        if not self.problems:
            return
        if len(self.problems) == 1:
            word = "refused" if "=" in self.problems[0].split(" ")[0] else "unknown"
            raise ConfigError(f"{word} setting {self.problems[0]} in {self.where}")
        raise ConfigError(
            f"{len(self.problems)} unknown or refused settings in {self.where}: "
            + "; ".join(self.problems)
        )


# SimpleTuner's config.env names of the keys in config/simpletuner.py.
ENV_TO_SIMPLETUNER: dict[str, str] = {
    "USE_EMA": "use_ema",
    "LORA_TYPE": "lora_type",
    "LYCORIS_CONFIG": "lycoris_config",
    "PUSH_TO_HUB": "push_to_hub",
    "PUSH_CHECKPOINTS": "push_checkpoints_to_hub",
    "HUB_MODEL_NAME": "hub_model_id",
    "TRACKER_PROJECT_NAME": "tracker_project_name",
    "TRACKER_RUN_NAME": "tracker_run_name",
    "MINIMUM_RESOLUTION": "minimum_image_size",
    "RESOLUTION_TYPE": "resolution_type",
    "ASPECT_BUCKET_ROUNDING": "aspect_bucket_rounding",
    "CAPTION_DROPOUT_PROBABILITY": "caption_dropout_probability",
    "VALIDATION_RESOLUTION": "validation_resolution",
    "VALIDATION_STEP_INTERVAL": "validation_steps",
    "CHECKPOINT_STEP_INTERVAL": "checkpointing_steps",
    "OPTIMIZER": "optimizer",
    "TRAINING_SEED": "seed",
}


def env_flag(check: KeyCheck, env_name: str, value: object, where: str) -> str | None:
    """The field a config.env name sets, or None (notice or problem recorded in check)."""
    if env_name in ENV_TO_FLAG:
        return ENV_TO_FLAG[env_name]
    if env_name in ENV_TO_SIMPLETUNER:
        return check.flag(ENV_TO_SIMPLETUNER[env_name], value)
    guess = nearest(env_name, [*ENV_TO_FLAG, *ENV_TO_SIMPLETUNER, EXTRA_ARGS_ENV])
    if env_name.lower() in FIELDS:
        hint = f" (write --{env_name.lower()}=... in {EXTRA_ARGS_ENV} instead)"
    elif guess:
        hint = f" (did you mean {guess}?)"
    else:
        hint = ""
    check.problems.append(f"{env_name} at {where}{hint}")
    return None
