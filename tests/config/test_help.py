"""`train --help` and `config show --help` list every flag, grouped, with type and default;
`--version`; none of it imports torch."""

from __future__ import annotations

import subprocess
import sys

import pytest

import expertune
from expertune.config.help import GROUPS, flag_help
from expertune.config.schema import TrainConfig


def test_every_field_is_in_exactly_one_group():
    grouped = [name for names in GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(TrainConfig.model_fields)
    assert list(GROUPS) == [
        "model",
        "data",
        "band",
        "schedule",
        "optimizer",
        "validation",
        "checkpoints",
        "logging",
    ]


def test_listing_gives_type_and_default():
    text = flag_help()
    assert "  --learning_rate float (default: 1e-06)" in text
    assert "  --pretrained_model_name_or_path text (default: required)" in text
    assert "  --report_to tensorboard|wandb|none (default: tensorboard)" in text
    assert "  --snr_gamma float (default: not set)  min-SNR loss weighting" in text


def _run(*args):
    code = (
        "import sys\nfrom expertune.cli import main\n"
        f"try:\n    main({list(args)!r})\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


@pytest.mark.parametrize("command", [["train", "--help"], ["config", "show", "--help"]])
def test_help_lists_every_flag_grouped_without_torch(command):
    result = _run(*command)
    assert result.returncode == 0, result.stderr
    for group in GROUPS:
        assert f"\n{group}:\n" in result.stdout
    for name in TrainConfig.model_fields:
        assert f"  --{name} " in result.stdout, name


def test_version():
    result = _run("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"expertune {expertune.__version__}"
