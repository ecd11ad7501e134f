"""Settings -> TrainConfig, turning every pydantic error into one ConfigError line.

The line names the key as the user wrote it (``LEARNING_RATE``, ``--learning_rate``),
where it was written, and what would be accepted instead.
"""

from __future__ import annotations

from pydantic import ValidationError

from expertune.config.schema import TrainConfig
from expertune.config.setting import Setting, Settings
from expertune.errors import ConfigError

MODEL_FLAG = "pretrained_model_name_or_path"

_EXPLAIN = {
    "bool_parsing": "must be true or false (1/0 and yes/no work too)",
    "bool_type": "must be true or false (1/0 and yes/no work too)",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number, e.g. 1e-6",
    "float_type": "must be a number, e.g. 1e-6",
    "string_type": "must be text",
}


def build_config(settings: Settings) -> TrainConfig:
    """Validate the merged settings into a TrainConfig that remembers their sources."""
    settings = normalise(settings)
    if MODEL_FLAG not in settings:
        raise ConfigError(
            "MODEL_NAME is not set: set MODEL_NAME in config.env (or --model_name / "
            "--pretrained_model_name_or_path) to a hub name, a local diffusers folder, or "
            "expertune/tiny-sdxl for the embedded tiny model"
        )
    try:
        cfg = TrainConfig.model_validate({flag: s.value for flag, s in settings.items()})
    except ValidationError as err:
        raise ConfigError(one_line(err, settings)) from None
    cfg._sources = {flag: s.describe() for flag, s in settings.items()}
    return cfg


def normalise(settings: Settings) -> Settings:
    """SimpleTuner conventions: an empty value is unset; 0 steps or epochs mean "the other"."""
    out = {flag: s for flag, s in settings.items() if not _is_empty(s.value)}
    if _is_zero(out.get("max_train_steps")):
        del out["max_train_steps"]
    epochs = out.get("num_train_epochs")
    if _is_zero(epochs):
        if "max_train_steps" not in out:
            raise ConfigError(
                f"{epochs.describe()} is 0 and MAX_NUM_STEPS (--max_train_steps) is not set: "
                "set one of them above 0"
            )
        del out["num_train_epochs"]  # the step count decides
    return out


def _is_empty(value: object) -> bool:
    """An empty or blank string (``VALIDATION_PROMPT=``); JSON null stays None."""
    return isinstance(value, str) and not value.strip()


def _is_zero(setting: Setting | None) -> bool:
    if setting is None or isinstance(setting.value, bool):
        return False
    return str(setting.value).strip() in ("0", "0.0")


def one_line(err: ValidationError, settings: Settings) -> str:
    """Every problem in ``err`` on one line, each naming the key as written."""
    parts = []
    for problem in err.errors():
        flag = str(problem["loc"][0]) if problem["loc"] else ""
        setting = settings.get(flag)
        if setting is None:  # a cross-field value error has no single key
            parts.append(_explain(problem))
            continue
        shown = str(setting.value).lower() if isinstance(setting.value, bool) else setting.value
        shown = repr(shown) if isinstance(shown, str) and not shown.strip() else shown
        text = str(shown).replace("\n", "\\n")[:80]
        parts.append(f"{setting.written}={text} ({setting.where}): {_explain(problem)}")
    return "; ".join(parts)


def _explain(problem: dict) -> str:
    kind, ctx = problem["type"], problem.get("ctx", {})
    if kind in _EXPLAIN:
        return _EXPLAIN[kind]
    if kind == "literal_error":
        return f"must be {ctx['expected']}"
    bounds = {
        "greater_than": "greater than {gt}",
        "greater_than_equal": "at least {ge}",
        "less_than": "less than {lt}",
        "less_than_equal": "at most {le}",
    }
    if kind in bounds:
        return "must be " + bounds[kind].format(**ctx)
    return str(problem["msg"]).removeprefix("Value error, ")
