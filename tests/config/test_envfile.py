"""config.env parsing: dotenv syntax, ${VAR} expansion inside the file, TRAINER_EXTRA_ARGS."""

from __future__ import annotations

import pytest

from expertune.config import load_config
from expertune.config.sources import read_file
from expertune.errors import ConfigError

MODEL = 'MODEL_NAME="some/model"\n'


def _one_line_error(path, argv=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(argv))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_export_quotes_comments_and_blank_lines(write):
    text = (
        "# comment line\n\n"
        "export MODEL_NAME='some/model'   # trailing comment\n"
        "LEARNING_RATE=1e-5 # unquoted with comment\n"
        '  export   OUTPUT_DIR = "out dir"\n'
        "VALIDATION_PROMPT=\n"
    )
    path = write("config.env", text)
    cfg = load_config(path)
    assert cfg.pretrained_model_name_or_path == "some/model"
    assert cfg.learning_rate == 1e-5
    assert cfg.output_dir == "out dir"
    assert cfg.validation_prompt is None  # an empty value means unset
    assert cfg.sources()["pretrained_model_name_or_path"] == f"MODEL_NAME ({path}:3)"
    assert cfg.sources()["output_dir"] == f"OUTPUT_DIR ({path}:5)"


def test_extra_args_expand_across_lines_and_last_assignment_wins(write):
    text = (
        MODEL
        + 'TRAINER_EXTRA_ARGS="--refiner_training"\n'
        + 'TRAINER_EXTRA_ARGS="${TRAINER_EXTRA_ARGS} --refiner_training_strength=0.3"\n'
        + "TRAINER_EXTRA_ARGS=\"$TRAINER_EXTRA_ARGS --validation_prompt 'a red fox'\"\n"
    )
    cfg = load_config(write("config.env", text))
    assert cfg.refiner_training is True
    assert cfg.refiner_training_strength == 0.3
    assert cfg.validation_prompt == "a red fox"
    assert cfg.expert_band() == (0, 299)


def test_reassigning_extra_args_without_reference_resets_it(write):
    text = MODEL + 'TRAINER_EXTRA_ARGS="--refiner_training"\nTRAINER_EXTRA_ARGS="--seed=3"\n'
    cfg = load_config(write("config.env", text))
    assert cfg.refiner_training is False and cfg.seed == 3


def test_helper_variables_expand_and_are_not_settings(write):
    text = 'BASE_DIR=/data\nMODEL_NAME="${BASE_DIR}/model"\nOUTPUT_DIR=${MISSING:-fallback}\n'
    cfg = load_config(write("config.env", text))
    assert cfg.pretrained_model_name_or_path == "/data/model"
    assert cfg.output_dir == "fallback"


def test_single_quotes_keep_dollar_signs_literal(write):
    text = MODEL + "VALIDATION_PROMPT='costs ${PRICE} today'\n"
    assert load_config(write("config.env", text)).validation_prompt == "costs ${PRICE} today"


def test_environment_is_never_read(write, monkeypatch):
    monkeypatch.setenv("SOME_DIR", "/from/environment")
    message = _one_line_error(write("config.env", MODEL + 'OUTPUT_DIR="${SOME_DIR}/out"\n'))
    assert "${SOME_DIR}" in message and "config.env:2" in message


def test_env_value_beats_nothing_but_extra_args_beat_env_names(write):
    text = MODEL + "LEARNING_RATE=1e-5\nTRAINER_EXTRA_ARGS=--learning_rate=2e-5\n"
    cfg = load_config(write("config.env", text))
    assert cfg.learning_rate == 2e-5
    assert "TRAINER_EXTRA_ARGS at" in cfg.sources()["learning_rate"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("CHECKPOINT_STEPS=100", {"checkpointing_steps": 100}),
        ("CHECKPOINTING_STEPS=100", {"checkpointing_steps": 100}),
        ("NUM_EPOCHS=3", {"num_train_epochs": 3}),
        ("MAX_NUM_STEPS=0", {"max_train_steps": None}),
        ("MAX_NUM_STEPS=250", {"max_train_steps": 250}),
        (
            "DATALOADER_CONFIG=config/multidatabackend.json",
            {"data_backend_config": "config/multidatabackend.json"},
        ),
        ("INSTANCE_DIR=/images", {"instance_data_dir": "/images"}),
        ("CACHE_DIR=/cache", {"cache_dir": "/cache"}),
        ("RESOLUTION=512", {"resolution": 512}),
        ("SEED=7", {"seed": 7}),
        ("VALIDATION_STEPS=50", {"validation_steps": 50}),
        ("USE_GRADIENT_CHECKPOINTING=YES", {"gradient_checkpointing": True}),
        ("USE_GRADIENT_CHECKPOINTING=0", {"gradient_checkpointing": False}),
        ("MODEL_TYPE=lora", {"model_type": "lora"}),
    ],
)
def test_env_names(write, line, expected):
    flags = load_config(write("config.env", MODEL + line + "\n")).as_flags()
    assert {k: flags[k] for k in expected} == expected


def test_num_epochs_zero_means_steps_decide(write):
    cfg = load_config(write("config.env", MODEL + "NUM_EPOCHS=0\nMAX_NUM_STEPS=30\n"))
    assert cfg.max_train_steps == 30 and cfg.num_train_epochs == 1
    message = _one_line_error(write("c.env", MODEL + "NUM_EPOCHS=0\nMAX_NUM_STEPS=0\n"))
    assert "NUM_EPOCHS" in message and "MAX_NUM_STEPS" in message


def test_syntax_error_names_file_and_line(write):
    path = write("config.env", MODEL + "LEARNING_RATE=1e-6\nexport OUTPUT_DIR out\n")
    message = _one_line_error(path)
    assert f"{path}:3" in message and "OUTPUT_DIR out" in message


def test_unterminated_quote_names_its_line(write):
    path = write("config.env", MODEL + 'OUTPUT_DIR="out\nSEED=3\nLEARNING_RATE="1e-5"\n')
    assert f"{path}:2" in _one_line_error(path)


def test_unbalanced_quote_inside_extra_args(write):
    path = write("config.env", MODEL + 'TRAINER_EXTRA_ARGS="--validation_prompt=\'a fox"\n')
    message = _one_line_error(path)
    assert "TRAINER_EXTRA_ARGS" in message and f"{path}:2" in message


def test_unknown_env_name_suggests_the_nearest(write):
    message = _one_line_error(write("config.env", MODEL + "LEARNING_RATES=1e-6\n"))
    assert "LEARNING_RATES" in message and "did you mean LEARNING_RATE?" in message
    assert "config.env:2" in message


def test_env_name_spelled_like_a_flag_points_at_extra_args(write):
    message = _one_line_error(write("config.env", MODEL + "PREDICTION_TYPE=v_prediction\n"))
    assert "--prediction_type" in message and "TRAINER_EXTRA_ARGS" in message


def test_unknown_flag_in_extra_args_names_its_line(write):
    text = (
        MODEL
        + 'TRAINER_EXTRA_ARGS="--refiner_training --refiner_trainig_strength=0.3"\n'
        + 'TRAINER_EXTRA_ARGS="${TRAINER_EXTRA_ARGS} --seed=1"\n'
    )
    path = write("config.env", text)
    message = _one_line_error(path)
    assert "unknown setting --refiner_trainig_strength" in message
    assert "(did you mean --refiner_training_strength?)" in message
    assert f"TRAINER_EXTRA_ARGS at {path}:2" in message


def test_wrong_type_names_env_name_and_line(write):
    path = write("config.env", MODEL + "TRAIN_BATCH_SIZE=eight\n")
    message = _one_line_error(path)
    assert message.startswith(f"TRAIN_BATCH_SIZE=eight ({path}:2)")
    assert "whole number" in message


def test_flags_read_from_env_file_keep_raw_strings(write):
    settings = read_file(write("config.env", MODEL + "SEED=7\n"))
    assert settings["seed"].value == "7" and settings["seed"].written == "SEED"


def test_required_variables_expand_or_stop_with_their_message(write):
    ok = write("ok.env", 'BASE=/runs\nMODEL_NAME=m\nOUTPUT_DIR="${BASE:?set BASE}/one"\n')
    assert load_config(ok, []).output_dir == "/runs/one"
    missing = write("missing.env", 'MODEL_NAME=m\nOUTPUT_DIR="${BASE:?set BASE to the runs}/x"\n')
    with pytest.raises(ConfigError, match=r"OUTPUT_DIR at .*missing.env:2: .*set BASE to the runs"):
        load_config(missing, [])
    empty = write("empty.env", 'BASE=\nMODEL_NAME=m\nOUTPUT_DIR="${BASE?}/x"\n')
    assert load_config(empty, []).output_dir == "/x"  # without the colon, empty is allowed
