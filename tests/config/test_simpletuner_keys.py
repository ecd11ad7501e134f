"""SimpleTuner keys: aliases, accepted no-ops, refusals, and every problem in one line."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from expertune.config import load_config
from expertune.config.names import FIELDS, nearest
from expertune.config.simpletuner import KEYS
from expertune.errors import ConfigError


def _error(path, argv=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, list(argv))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_three_unknown_keys_are_named_in_one_error(write):
    data = {"model_name": "m", "--frobnicate": 1, "wibble_steps": 3, "zzz_mode": "on"}
    message = _error(write("c.json", json.dumps(data)))
    assert message.startswith("3 unknown or refused settings in ")
    for key in ("--frobnicate", "--wibble_steps", "--zzz_mode"):
        assert key in message


def test_three_unknown_keys_exit_2_in_one_run(write):
    data = {"model_name": "m", "frobnicate": 1, "wibble_steps": 3, "zzz_mode": "on"}
    path = write("c.json", json.dumps(data))
    result = subprocess.run(
        [sys.executable, "-m", "expertune.cli", "config", "show", "--config", str(path)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert all(k in lines[0] for k in ("frobnicate", "wibble_steps", "zzz_mode"))


@pytest.mark.parametrize(
    ("key", "harmful"),
    [
        ("use_ema", "use_dora"),
        ("push_checkpoints_to_hub", "checkpoints_total_limit"),
        ("validation_resolution", "validation_refiner"),
    ],
)
def test_no_hint_points_at_a_different_setting(key, harmful):
    """The issue's three: before they were flags, difflib sent them to harmful flags."""
    others = [f for f in FIELDS if f != key]
    assert harmful in others
    assert nearest(key, others) is None


def test_unknown_key_gets_no_far_fetched_hint(write):
    message = _error(write("c.json", json.dumps({"model_name": "m", "use_emma_decay": 0.9})))
    assert "did you mean" not in message


def test_misspelling_still_gets_its_flag():
    assert nearest("learnig_rate", FIELDS) == "learning_rate"
    assert nearest("LR-Scheduler", FIELDS) == "lr_scheduler"
    assert nearest("use_emma", FIELDS) == "use_ema"
    assert nearest("disable_benchmark", FIELDS) is None


def test_aliases_are_simpletuners_current_names(write):
    data = {"model_name": "m", "checkpoint_step_interval": 7, "validation_step_interval": 9}
    cfg = load_config(write("c.json", json.dumps(data)))
    assert (cfg.checkpointing_steps, cfg.validation_steps) == (7, 9)
    assert cfg.sources()["checkpointing_steps"].startswith("checkpoint_step_interval (")


def test_off_values_are_accepted_with_one_notice_each(write, caplog):
    data = {
        "model_name": "m",
        "validation_torch_compile": False,
        "validation_prompt_library": "",
        "model_flavour": "1.0",
    }
    with caplog.at_level(logging.INFO, logger="expertune.config"):
        load_config(write("c.json", json.dumps(data)))
    notices = [r.getMessage() for r in caplog.records]
    assert len(notices) == 3
    assert any(n.startswith("validation_prompt_library= has no effect in") for n in notices)


def test_on_values_of_no_op_keys_are_refused_with_the_reason(write):
    data = {"model_name": "m", "validation_prompt_library": "x", "validation_torch_compile": True}
    message = _error(write("c.json", json.dumps(data)))
    assert "--validation_prompt_library=x (prompt libraries are not read" in message
    assert "--validation_torch_compile=true (validation runs uncompiled" in message


def test_env_names_of_simpletuner_keys(write, caplog):
    text = 'MODEL_NAME="m"\nUSE_EMA=false\nCHECKPOINT_STEP_INTERVAL=5\nFOO_BAR=1\nBAZ=2\n'
    message = _error(write("config.env", text))
    assert message.startswith("2 unknown or refused settings in ")
    assert "FOO_BAR at " in message and "BAZ at " in message and "USE_EMA" not in message


def test_command_line_collects_every_problem_too():
    message = _error(
        None, ["--model_name=m", "--aaa", "--bbb=1", "--validation_torch_compile", "true"]
    )
    assert message.startswith("3 unknown or refused settings in command line")
    assert "--validation_torch_compile=true (" in message


def test_table_keys_are_not_fields_and_aliases_name_fields():
    for name, key in KEYS.items():
        assert name not in FIELDS, f"{name} is a field now: drop it from KEYS"
        if key.kind == "alias":
            assert key.target in FIELDS
