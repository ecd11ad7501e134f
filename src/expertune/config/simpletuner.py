"""SimpleTuner keys that are not TrainConfig fields: aliases, no-ops and refusals.

Every key met in SimpleTuner's example configs is either a TrainConfig field
(supported), or listed here as one of:

- ``alias``: another name of one of our fields (SimpleTuner's newer names);
- ``noop``: accepted with a one-line notice when its value changes nothing here (off,
  empty or SimpleTuner's default); any other value is refused with the reason;
- ``refused``: always refused, with the reason.

docs/migrating-from-simpletuner.md is generated from this table (``markdown_table``).
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
    "base_model_precision": Key(
        "noop",
        "quantised base models (int8-quanto, fp8, ...) are not supported; remove the key or "
        "set it to no_change",
        harmless=_one_of("no_change"),
    ),
    "quantize_via": Key(
        "noop",
        "only used with base_model_precision, which expertune keeps at no_change",
        harmless=_always,
    ),
    "model_flavour": Key(
        "noop",
        "pretrained_model_name_or_path (MODEL_NAME) alone decides which weights load",
        harmless=_always,
    ),
    "controlnet": Key(
        "noop", "ControlNet training is not supported; expertune trains denoiser experts"
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


def markdown_table(fields: tuple[str, ...] = ()) -> str:
    """The migration table: ``fields`` (supported keys) then every key of KEYS."""
    rows = ["| SimpleTuner key | expertune | notes |", "| --- | --- | --- |"]
    for name in fields:
        rows.append(f"| `{name}` | supported | same name and meaning |")
    for name, key in KEYS.items():
        what = {"alias": f"alias of `{key.target}`", "noop": "no-op or refused"}.get(
            key.kind, "refused"
        )
        rows.append(f"| `{name}` | {what} | {key.why} |")
    return "\n".join(rows)
