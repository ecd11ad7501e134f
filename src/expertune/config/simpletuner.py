"""SimpleTuner keys that are not TrainConfig fields: aliases, no-ops and refusals.

Every key met in SimpleTuner's example configs is either a TrainConfig field
(supported), or listed here as one of:

- ``alias``: another name of one of our fields (SimpleTuner's newer names);
- ``noop``: accepted with a one-line notice when its value changes nothing here (off,
  empty or SimpleTuner's default); any other value is refused with the reason;
- ``refused``: always refused, with the reason.

docs/migrating-from-simpletuner.md holds the table ``migration_table`` generates from it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Kind = Literal["alias", "noop", "refused"]


def _off(value: object) -> bool:
    """False, 0, empty, none: the value SimpleTuner treats as "not used"."""
    if value is None or value is False:
        return True
    text = str(value).strip().lower()
    return text in ("", "false", "0", "0.0", "no", "none", "null")


def _always(_value: object) -> bool:
    return True


def _one_of(*allowed: str) -> Callable[[object], bool]:
    def check(value: object) -> bool:
        return _off(value) or str(value).strip().lower() in allowed

    return check


@dataclass(frozen=True)
class Key:
    """What expertune does with one SimpleTuner key."""

    kind: Kind
    why: str  # alias: what it means; noop: why it changes nothing; refused: why not / fix
    target: str | None = None  # alias: the field it names
    harmless: Callable[[object], bool] = _off  # noop: which values change nothing

    def accepts(self, value: object) -> bool:
        return self.kind == "noop" and self.harmless(value)


KEYS: dict[str, Key] = {
    "checkpoint_step_interval": Key(
        "alias", "SimpleTuner's current name of checkpointing_steps", "checkpointing_steps"
    ),
    "validation_step_interval": Key(
        "alias", "SimpleTuner's current name of validation_steps", "validation_steps"
    ),
    "checkpoint_steps": Key("alias", "older name of checkpointing_steps", "checkpointing_steps"),
    "model_name": Key("alias", "short name of the model", "pretrained_model_name_or_path"),
    "num_epochs": Key("alias", "short name of num_train_epochs", "num_train_epochs"),
    "disable_benchmark": Key(
        "noop",
        "expertune renders no benchmark images of the untrained model (SimpleTuner's "
        "default, false, asks for them); validation starts at the first validation step",
        harmless=_always,
    ),
    "validation_torch_compile": Key(
        "noop", "validation runs uncompiled; torch.compile of the validation UNet is refused"
    ),
    "validation_prompt_library": Key(
        "noop",
        "prompt libraries are not read; give the prompts as a JSON list in validation_prompt",
    ),
    "disable_bucket_pruning": Key(
        "noop",
        "expertune never prunes a bucket smaller than the batch: it fills the batch by "
        "repeating that bucket's images, so pruning is off already",
        harmless=_always,
    ),
    "model_flavour": Key(
        "noop",
        "pretrained_model_name_or_path (MODEL_NAME) alone decides which weights load",
        harmless=_always,
    ),
    "aspect_bucket_rounding": Key(
        "noop",
        "expertune buckets by side lengths aligned to aspect_bucket_alignment, not by "
        "rounded aspect ratios, so the rounding has nothing to act on",
        harmless=_always,
    ),
}

ALIASES: dict[str, str] = {k: v.target for k, v in KEYS.items() if v.kind == "alias"}


def notice(key: str, value: object) -> str:
    """The one-line notice for an accepted no-op key."""
    return f"{key}={_shown(value)} has no effect in expertune: {KEYS[key].why}"


def refusal(key: str, value: object) -> str:
    """Why ``key=value`` is refused (for a key in KEYS)."""
    return f"{key}={_shown(value)} ({KEYS[key].why})"


def _shown(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)[:60]


# Every key met in SimpleTuner's config/config.json.example and its SDXL-family examples
# (sdxl.lycoris-lokr, sdxl.peft-controlnet-lora, kolors.peft-lora): the migration table's rows.
MET_KEYS: tuple[str, ...] = (
    "aspect_bucket_rounding", "base_model_precision", "caption_dropout_probability",
    "checkpoint_step_interval", "checkpoints_total_limit", "controlnet", "data_backend_config",
    "disable_benchmark", "disable_bucket_pruning", "gradient_checkpointing", "hub_model_id",
    "learning_rate", "lora_alpha", "lora_rank", "lora_type", "loss_type", "lr_scheduler",
    "lr_warmup_steps", "lycoris_config", "max_train_steps", "minimum_image_size",
    "mixed_precision", "model_family", "model_flavour", "model_type", "num_train_epochs",
    "optimizer", "output_dir", "pretrained_model_name_or_path", "push_checkpoints_to_hub",
    "push_to_hub", "quantize_via", "report_to", "resolution", "resolution_type",
    "resume_from_checkpoint", "seed", "tracker_project_name", "tracker_run_name",
    "train_batch_size", "use_ema", "vae_batch_size", "validation_guidance",
    "validation_guidance_rescale", "validation_num_inference_steps", "validation_prompt",
    "validation_prompt_library", "validation_resolution", "validation_seed",
    "validation_step_interval", "validation_steps", "validation_torch_compile",
)  # fmt: skip

# Supported keys whose values or meaning differ from SimpleTuner's in a way a migrating
# user must know; every other supported key means what it means there.
DIFFERENCES: dict[str, str] = {
    "model_family": "`sdxl` (SDXL, SSD-1B, ...) and `sdxl-refiner` only; flux, kolors "
    "and other families are refused by value",
    "model_type": "`full` or `lora`",
    "controlnet": "needs a `dataset_type: conditioning` dataset named by the image dataset's "
    "`conditioning_data`; the UNet stays frozen; publishes `controlnet/` (LoRA merged) "
    "beside the pipeline; validation prompts render through the ControlNet pipeline, "
    "conditioned on the first training sample's conditioning image",
    "optimizer": "adamw, adamw_bf16 (torch AdamW on fp32 master weights: exact update), "
    "adamw8bit (CUDA only), prodigy, lion, adafactor; others refused by value",
    "lr_scheduler": "constant, constant_with_warmup, linear, cosine, cosine_with_restarts, "
    "polynomial; `constant` with lr_warmup_steps warns and warms up",
    "loss_type": "l2, huber, smooth_l1 with huber_c (0.1) and huber_schedule (snr), as there",
    "caption_dropout_probability": "drops the caption only (the empty caption's "
    "embeddings, cached once), not SDXL's size conditioning; resume-exact",
    "resolution_type": "top-level default for datasets that do not set it; not set means "
    "`pixel` per dataset, where SimpleTuner's default is `pixel_area`",
    "minimum_image_size": "top-level default for datasets that do not set it",
    "use_ema": "EMA is published as the final model (SimpleTuner saves it beside, in ema/); "
    "the raw weights stay in the last checkpoint",
    "lora_type": "`standard` (PEFT LoRA) or `lycoris`",
    "lycoris_config": "SimpleTuner's JSON; adapter saved in LyCORIS keys ComfyUI loads",
    "base_model_precision": "no_change, int8-quanto, int4-quanto, int2-quanto, fp8-quanto "
    "(optimum-quanto, adapters only); others (torchao, bnb) refused by value; the published "
    "pipeline merges the adapter into the unquantised base",
    "quantize_via": "`cpu` or `accelerator` (the default): where the base is quantised",
    "report_to": "tensorboard, wandb (offline without key or network), none",
    "push_to_hub": "hub and token checked before training; one commit with a model card",
    "validation_resolution": "`WxH`, `N` or a comma list, width first",
    "resume_from_checkpoint": "`latest` with no checkpoint yet starts fresh, as there",
}


def migration_table(fields: tuple[str, ...]) -> str:
    """The table of docs/migrating-from-simpletuner.md: every key of MET_KEYS and KEYS.

    `fields` are TrainConfig's field names (passed in, so this module needs no schema).
    """
    rows = ["| SimpleTuner key | in expertune | notes |", "| --- | --- | --- |"]
    for name in sorted(set(MET_KEYS) | set(KEYS)):
        key = KEYS.get(name)
        if name in fields:
            rows.append(f"| `{name}` | supported | {DIFFERENCES.get(name, 'same meaning')} |")
        elif key is not None and key.kind == "alias":
            rows.append(f"| `{name}` | alias of `{key.target}` | {key.why} |")
        elif key is not None and key.harmless is _always:
            rows.append(f"| `{name}` | no-op (any value; one notice) | {key.why} |")
        elif key is not None:
            rows.append(f"| `{name}` | no-op when off, else refused | {key.why} |")
        else:
            rows.append(f"| `{name}` | refused (unknown) | not an expertune setting |")
    return "\n".join(rows)
