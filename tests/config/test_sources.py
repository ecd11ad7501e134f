"""JSON and TOML sources, command-line flags, and which source wins."""

from __future__ import annotations

import json

import pytest

from expertune.config import load_config
from expertune.config.sources import read_argv
from expertune.errors import ConfigError


def _error(path, argv=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(argv))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_json_keys_with_and_without_dashes(write):
    data = {
        "--learning_rate": 1e-5,
        "model_type": "lora",
        "--refiner_training": True,
        "--refiner_training_strength": 0.35,
        "--model_name": "some/model",
        "train_batch_size": "4",
        "snr_gamma": None,
    }
    cfg = load_config(write("config.json", json.dumps(data)))
    assert (cfg.learning_rate, cfg.model_type, cfg.train_batch_size) == (1e-5, "lora", 4)
    assert cfg.pretrained_model_name_or_path == "some/model"
    assert cfg.expert_band() == (0, 349)
    assert cfg.snr_gamma is None


def test_toml_source(write):
    text = (
        'pretrained_model_name_or_path = "some/model"\n'
        '"--refiner_training" = true\n'
        "refiner_training_strength = 0.35\n"
        "refiner_training_invert_schedule = true\n"
        'prediction_type = "v_prediction"\n'
        "checkpoint_steps = 100\n"
    )
    cfg = load_config(write("config.toml", text))
    assert cfg.expert_band() == (350, 999)
    assert cfg.prediction_type == "v_prediction"
    assert cfg.checkpointing_steps == 100


def test_command_line_overrides_every_file_kind(write, stage1):
    json_path = write("c.json", json.dumps({"model_name": "a", "learning_rate": 1e-5}))
    toml_path = write("c.toml", 'model_name = "a"\nlearning_rate = 1e-5\n')
    for path in (stage1, json_path, toml_path):
        cfg = load_config(path, ["--learning_rate=3e-6", "--seed", "9"])
        assert (cfg.learning_rate, cfg.seed) == (3e-6, 9)
        assert cfg.sources()["learning_rate"] == "--learning_rate (command line)"


def test_command_line_can_turn_a_file_boolean_off(stage1):
    cfg = load_config(
        stage1, ["--refiner_training_invert_schedule=false", "--validation_using_datasets"]
    )
    assert cfg.expert_band() == (0, 349)
    assert cfg.validation_using_datasets is True


def test_flags_only_without_a_file():
    cfg = load_config(
        None, ["--model_name", "m", "--refiner_training", "--refiner_training_strength", "0.2"]
    )
    assert cfg.expert_band() == (0, 199)


def test_argv_forms():
    settings = read_argv(
        ["--use_bitfit", "--rescale_betas_zero_snr", "no", "--seed", "3", "--output_dir=a=b"]
    )
    assert settings["use_bitfit"].value is True
    assert settings["rescale_betas_zero_snr"].value == "no"
    assert settings["seed"].value == "3"
    assert settings["output_dir"].value == "a=b"


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--seed"], "--seed in command line needs a value"),
        (["--seed", "--use_bitfit"], "--seed in command line needs a value"),
        (["stray"], "unexpected argument 'stray'"),
        (
            ["--lerning_rate=1"],
            "unknown setting --lerning_rate (did you mean --learning_rate?) in command line",
        ),
        (["--zzzz=1"], "unknown setting --zzzz in command line"),
    ],
)
def test_argv_errors(argv, needle):
    assert needle in _error(None, ["--model_name=m", *argv])


def test_unknown_json_key_suggests_the_flag(write):
    path = write("c.json", json.dumps({"model_name": "m", "--refiner_trainig_strength": 0.3}))
    message = _error(path)
    assert (
        "unknown setting --refiner_trainig_strength "
        f"(did you mean --refiner_training_strength?) in {path}" in message
    )
    assert "(did you mean --refiner_training_strength?)" in message


def test_env_name_in_json_suggests_the_flag(write):
    message = _error(write("c.json", json.dumps({"MODEL_NAME": "m"})))
    assert "did you mean --model_name?" in message


@pytest.mark.parametrize(
    ("name", "text", "needle"),
    [
        ("c.json", '{"model_name": "m",\n "seed": }', "c.json:2: not valid JSON"),
        ("c.json", '["--seed=1"]', "must hold one object of flags"),
        ("c.json", '{"model_name": "m", "seed": [1]}', "seed in"),
        ("c.toml", 'model_name = "m"\nseed = \n', "not valid TOML"),
        ("c.toml", 'model_name = "m"\n[extra]\nseed = 1\n', "not a table or list"),
        ("c.yaml", "seed: 1\n", "unknown extension '.yaml'"),
        ("config", "SEED=1\n", "unknown extension '(none)'"),
    ],
)
def test_file_errors(write, name, text, needle):
    assert needle in _error(write(name, text))


def test_missing_file(tmp_path):
    assert "does not exist" in _error(tmp_path / "nope.env")
    assert "is a directory" in _error(tmp_path)


def test_non_utf8_file(tmp_path):
    path = tmp_path / "config.env"
    path.write_bytes(b"MODEL_NAME=\xff\xfe\n")
    assert "not UTF-8" in _error(path)


def test_dot_env_file_name(tmp_path):
    path = tmp_path / ".env"
    path.write_text("MODEL_NAME=m\n")
    assert load_config(path).pretrained_model_name_or_path == "m"


def test_repeated_validation_prompt_collects_every_prompt():
    from expertune.config import load_config

    cfg = load_config(
        None,
        ["--model_name=x/y", "--validation_prompt", "a cat", "--validation_prompt=a dog"],
    )
    assert cfg.validation_prompts == ("a cat", "a dog")


@pytest.mark.parametrize(
    "name, text",
    [
        ("bom.json", '\ufeff{"model_name": "m", "learning_rate": 3e-5}'),
        ("bom.toml", '\ufeffmodel_name = "m"\nlearning_rate = 3e-5\n'),
        ("bom.env", '\ufeffexport MODEL_NAME="m"\nexport LEARNING_RATE=3e-5\n'),
    ],
)
def test_a_byte_order_mark_is_accepted(write, name, text):
    cfg = load_config(write(name, text), [])
    assert cfg.pretrained_model_name_or_path == "m" and cfg.learning_rate == 3e-5


def test_a_key_written_twice_is_refused_naming_both_lines(write):
    path = write("twice.json", '{"model_name": "m",\n"seed": 1,\n"--seed": 2,\n"seed": 3}')
    assert "key 'seed' is set twice (lines 2 and 4)" in _error(path)
    toml = write("twice.toml", 'model_name = "m"\nseed = 1\n\nseed = 2\n')
    assert "key 'seed' is set twice (lines 2 and 4)" in _error(toml)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"model_name": "m",\n\n "validation_prompt": "caf\xe9"}')
    assert "latin1.json:3 is not UTF-8 text" in _error(path)
