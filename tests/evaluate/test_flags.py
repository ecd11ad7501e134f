"""The issue-4 flags: several validation prompts, role rules, and what each expert validates."""

from __future__ import annotations

import pytest

from expertune.config import load_config
from expertune.errors import ConfigError
from expertune.evaluate.band_diagram import band_svg, plan_edges
from expertune.evaluate.validation import plan_validation
from expertune.schedule.bands import Band

MODEL = "--pretrained_model_name_or_path=/models/x"
BASE = ("--refiner_training", "--refiner_training_invert_schedule")


def config(*flags: str):
    return load_config(None, [MODEL, *flags])


def test_one_prompt_or_a_json_list_of_prompts():
    assert config("--validation_prompt=a cat").validation_prompts == ("a cat",)
    several = config('--validation_prompt=["a cat", "a dog, running"]')
    assert several.validation_prompts == ("a cat", "a dog, running")
    assert config().validation_prompts == ()


@pytest.mark.parametrize("bad", ['["a cat", 3]', "[]", '["unclosed"'])
def test_a_broken_prompt_list_is_a_one_line_error(bad):
    with pytest.raises(ConfigError, match="JSON list of prompts") as err:
        config(f"--validation_prompt={bad}")
    assert "\n" not in str(err.value)


def test_validation_refiner_needs_stage_one():
    assert config(*BASE, "--validation_refiner=/r").validation_refiner == "/r"
    with pytest.raises(ConfigError, match="does not train stage one"):
        config("--refiner_training", "--validation_refiner=/r")


def test_clip_needs_images_to_score():
    with pytest.raises(ConfigError, match="evaluation_type=clip"):
        config("--evaluation_type=clip")
    assert config("--evaluation_type=clip", "--validation_using_datasets").evaluation_type == "clip"


def test_stage_one_renders_prompts_stage_two_validates_on_dataset_images():
    base = plan_validation(config(*BASE, "--validation_prompt=a cat"), Band(350, 999), 1000)
    assert base.prompts == ("a cat",) and not base.datasets and not base.notes
    cfg = config("--refiner_training", "--refiner_training_strength=0.35", "--validation_prompt=a")
    refiner = plan_validation(cfg, Band(0, 349), 1000)
    assert refiner.prompts == () and refiner.datasets
    assert "cannot start from pure noise" in refiner.notes[0] and "t=349" in refiner.notes[0]


def test_an_sdxl_refiner_model_validates_on_dataset_images_even_over_the_full_range():
    cfg = config("--model_family=sdxl-refiner", "--validation_prompt=a cat")
    plan = plan_validation(cfg, Band(0, 999), 1000)
    assert plan.prompts == () and plan.datasets
    assert "sdxl-refiner" in plan.notes[0]


def test_band_diagram_marks_this_expert_and_the_handover():
    assert plan_edges([350, 999], 1000) == [0, 350, 1000]
    assert plan_edges([0, 999], 1000) == [0, 1000]
    svg = band_svg([0, 349], 1000)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "[0, 349] this expert" in svg and "[350, 999]" in svg
    assert "denoising_end 0.65" in svg
