"""docs/migrating-from-simpletuner.md holds the table config/simpletuner.py generates, and
that table covers every key of SimpleTuner's example configs kept under tests/."""

from __future__ import annotations

import json
from pathlib import Path

import expertune
from expertune.config.schema import TrainConfig
from expertune.config.simpletuner import KEYS, MET_KEYS, migration_table

ROOT = Path(expertune.__file__).parents[2]
EXAMPLES = Path(__file__).parent / "data" / "simpletuner"


def test_doc_table_is_the_generated_one():
    text = (ROOT / "docs/migrating-from-simpletuner.md").read_text(encoding="utf-8")
    table = text.split("<!-- table: generated -->\n", 1)[1].split("\n<!-- /table -->", 1)[0]
    assert table == migration_table(tuple(TrainConfig.model_fields))


def test_every_example_key_is_in_the_table():
    keys = set()
    for path in EXAMPLES.glob("*.orig*"):
        keys |= {k.removeprefix("--") for k in json.loads(path.read_text())}
    assert keys == set(MET_KEYS)
    fields = set(TrainConfig.model_fields)
    assert all(k in fields or k in KEYS for k in MET_KEYS)
