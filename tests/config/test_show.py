"""`config show`: JSON and listing output, and config/ staying free of torch."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import expertune
from expertune.config import TrainConfig, load_config, show_config
from expertune.config.names import ENV_TO_FLAG, FLAG_ALIASES


def test_json_is_one_object_of_fields_plus_band(stage1):
    shown = json.loads(show_config(load_config(stage1), as_json=True))
    assert list(shown) == [*TrainConfig.model_fields, "band"]
    assert shown["band"] == [350, 999]
    assert shown["learning_rate"] == 4e-7 and shown["refiner_training"] is True


def test_listing_is_aligned_and_names_sources(stage1):
    text = show_config(load_config(stage1), as_json=False)
    lines = text.splitlines()
    assert lines[0].startswith("band") and "[350, 999]" in lines[0]
    assert len({line.index(" = ") for line in lines}) == 1
    rate = next(line for line in lines if line.startswith("learning_rate "))
    assert re.search(r"= 4e-07 +# LEARNING_RATE \(.*seed_stage1.env:10\)$", rate)
    default = next(line for line in lines if line.startswith("lora_rank "))
    assert "#" not in default


def test_importing_config_does_not_import_torch():
    code = (
        "import sys, expertune.config, expertune.schedule.bands; "
        "heavy = {'torch', 'diffusers', 'transformers'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    src = str(Path(expertune.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_docs_name_every_env_name_and_flag():
    docs = Path(expertune.__file__).parents[2] / "docs" / "config.md"
    text = docs.read_text(encoding="utf-8")
    for name in [*ENV_TO_FLAG, "TRAINER_EXTRA_ARGS"]:
        assert f"`{name}`" in text, name
    for flag in [*TrainConfig.model_fields, *FLAG_ALIASES]:
        assert f"`--{flag}`" in text, flag
