"""TrainConfig: defaults, one-line errors naming the key as written, cross-field rules."""

from __future__ import annotations

import json

import pytest

from expertune.config import TrainConfig, load_config
from expertune.errors import ConfigError

MODEL = ["--model_name=m"]


def _error(argv) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, argv)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_defaults():
    cfg = load_config(None, MODEL)
    assert cfg.model_type == "full" and cfg.learning_rate == 1e-6
    assert cfg.training_scheduler_timestep_spacing == "trailing"
    assert cfg.max_train_steps is None and cfg.num_train_epochs == 1
    assert cfg.expert_band() == (0, 999)
    assert cfg.expert_band(10) == (0, 9)
    assert len(cfg.band_plan()) == 1


def test_missing_model_name():
    assert _error([]).startswith("MODEL_NAME is not set")


def test_frozen_and_extra_forbidden():
    cfg = load_config(None, MODEL)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        cfg.seed = 3  # type: ignore[misc]
    with pytest.raises(Exception):  # noqa: B017
        TrainConfig(pretrained_model_name_or_path="m", not_a_field=1)  # type: ignore[call-arg]


def test_as_flags_is_json_and_equality_ignores_sources(write):
    from_json = load_config(write("c.json", json.dumps({"model_name": "m", "seed": 5})))
    from_flags = load_config(None, ["--pretrained_model_name_or_path", "m", "--seed=5"])
    assert from_json == from_flags and hash(from_json) == hash(from_flags)
    assert from_json.sources() != from_flags.sources()
    assert json.loads(json.dumps(from_json.as_flags())) == from_flags.as_flags()
    assert set(from_json.as_flags()) == set(TrainConfig.model_fields)


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["--learning_rate=fast"], ["--learning_rate=fast (command line)", "must be a number"]),
        (["--learning_rate=0"], ["--learning_rate=0", "greater than 0"]),
        (["--model_type=dreambooth"], ["--model_type=dreambooth", "'full' or 'lora'"]),
        (["--lr_scheduler=sine"], ["--lr_scheduler=sine", "'cosine'"]),
        (["--prediction_type=x"], ["--prediction_type=x", "'v_prediction'"]),
        (["--training_scheduler_timestep_spacing=x"], ["'trailing'"]),
        (["--mixed_precision=fp8"], ["'bf16'"]),
        (["--report_to=comet"], ["--report_to=comet", "'wandb'", "'none'"]),
        (["--use_bitfit=maybe"], ["--use_bitfit=maybe", "true or false"]),
        (["--train_batch_size=1.5"], ["--train_batch_size=1.5", "whole number"]),
        (["--train_batch_size=0"], ["--train_batch_size=0", "at least 1"]),
        (["--resolution=1020"], ["--resolution=1020", "multiple of 8"]),
        (["--resolution=32"], ["--resolution=32", "at least 64"]),
        (["--max_train_steps=-5"], ["--max_train_steps=-5", "at least 1"]),
        (["--num_train_epochs=-1"], ["--num_train_epochs=-1"]),
        (["--checkpointing_steps=-1"], ["--checkpointing_steps=-1", "at least 0"]),
        (["--checkpoints_total_limit=0"], ["--checkpoints_total_limit=0"]),
        (["--logging_steps=0"], ["--logging_steps=0"]),
        (["--snr_gamma=0"], ["--snr_gamma=0"]),
        (["--noise_offset=-0.1"], ["--noise_offset=-0.1"]),
        (["--refiner_training_strength=1"], ["--refiner_training_strength=1", "less than 1"]),
        (["--refiner_training_strength=0"], ["--refiner_training_strength=0", "greater than 0"]),
        (["--lora_rank=0"], ["--lora_rank=0"]),
        (["--model_family=flux"], ["--model_family=flux", "'sdxl'"]),
    ],
)
def test_value_errors_are_one_line_naming_the_flag(argv, needles):
    message = _error(MODEL + argv)
    for needle in needles:
        assert needle in message


def test_several_problems_share_one_line():
    message = _error([*MODEL, "--seed=x", "--learning_rate=y"])
    assert "--seed=x" in message and "--learning_rate=y" in message and "; " in message


@pytest.mark.parametrize(
    ("word", "value"),
    [("true", True), ("YES", True), ("1", True), ("False", False), ("no", False), ("0", False)],
)
def test_boolean_words(word, value):
    cfg = load_config(None, [*MODEL, f"--rescale_betas_zero_snr={word}"])
    assert cfg.rescale_betas_zero_snr is value


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (
            ["--refiner_training_invert_schedule"],
            ["--refiner_training_invert_schedule needs --refiner_training"],
        ),
        (["--use_dora"], ["DoRA needs MODEL_TYPE=lora"]),
        (["--use_dora", "--model_type=lora"], ["USE_DORA", "not implemented yet"]),
        (["--use_bitfit", "--model_type=lora"], ["USE_BITFIT", "MODEL_TYPE=lora"]),
        (["--use_bitfit"], ["USE_BITFIT", "not implemented yet"]),
        (
            ["--refiner_training", "--refiner_training_strength=0.0004"],
            ["--refiner_training_strength=0.0004", "no timesteps"],
        ),
        (
            ["--refiner_training", "--refiner_training_strength=0.9996"],
            ["--refiner_training_strength=0.9996", "no timesteps"],
        ),
    ],
)
def test_cross_field_rules(argv, needles):
    message = _error(MODEL + argv)
    for needle in needles:
        assert needle in message


def test_cross_field_rules_hold_for_direct_construction():
    with pytest.raises(ConfigError, match="needs --refiner_training"):
        TrainConfig(pretrained_model_name_or_path="m", refiner_training_invert_schedule=True)


def test_strength_edges_of_the_valid_range():
    low = load_config(None, [*MODEL, "--refiner_training", "--refiner_training_strength=0.001"])
    high = load_config(
        None,
        [
            *MODEL,
            "--refiner_training",
            "--refiner_training_strength=0.999",
            "--refiner_training_invert_schedule",
        ],
    )
    assert low.expert_band() == (0, 0)
    assert high.expert_band() == (999, 999)


def test_float_noise_does_not_lose_a_step():
    cfg = load_config(None, [*MODEL, "--refiner_training", "--refiner_training_strength=0.29"])
    assert cfg.expert_band() == (0, 289)  # 0.29 * 1000 == 289.99999999999994
