"""moe configs -> one band plan and K TrainConfigs; every mistake is one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusers import DDPMScheduler

from expertune.config.moe import describe, load_moe
from expertune.errors import ConfigError

SHARED = '[shared]\npretrained_model_name_or_path = "expertune/tiny-sdxl"\nlearning_rate = 2e-6\n'
THREE = (
    '[[experts]]\nname = "high"\nlearning_rate = 1e-5\n'
    '[[experts]]\nname = "mid"\n'
    '[[experts]]\nname = "low"\nmodel_type = "lora"\n'
)


def _write(tmp_path: Path, head: str, experts: str = THREE, shared: str = SHARED) -> Path:
    path = tmp_path / "moe.toml"
    path.write_text(f'output_root = "{tmp_path / "out"}"\n{head}\n{shared}{experts}')
    return path


def test_edges_give_three_experts_in_denoising_order(tmp_path):
    moe = load_moe(_write(tmp_path, "edges = [0, 250, 600, 1000]"))
    assert moe.names == ("high", "mid", "low")
    assert [c.expert_band() for c in moe.experts] == [(600, 999), (250, 599), (0, 249)]
    high, mid, low = moe.experts
    assert high.learning_rate == 1e-5 and mid.learning_rate == 2e-6  # override vs shared
    assert low.model_type == "lora" and high.model_type == "full"
    assert {c.cache_dir for c in moe.experts} == {str(tmp_path / "out" / "cache")}
    assert [Path(c.output_dir).name for c in moe.experts] == ["high", "mid", "low"]
    assert [c.expert_name for c in moe.experts] == ["high", "mid", "low"]


@pytest.mark.parametrize("zsnr", [False, True])
def test_snr_edges_equal_diffusers_alphas_cumprod(tmp_path, zsnr):
    shared = SHARED + f"rescale_betas_zero_snr = {str(zsnr).lower()}\n"
    moe = load_moe(_write(tmp_path, "snr = [4.0, 0.25]", shared=shared))
    sched = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        rescale_betas_zero_snr=zsnr,
    )
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    expected = [int(torch.nonzero(snr < s)[0]) for s in (4.0, 0.25)]
    assert list(moe.plan.edges) == [0, *expected, 1000]


def test_strengths_and_boundary_ratio(tmp_path):
    two = '[[experts]]\nname = "base"\n[[experts]]\nname = "refiner"\n'
    moe = load_moe(_write(tmp_path, "strengths = [0.35]", experts=two))
    assert [c.expert_band() for c in moe.experts] == [(350, 999), (0, 349)]
    wan = load_moe(_write(tmp_path, "boundary_ratio = 0.875", experts=two))
    assert wan.plan.edges == (0, 875, 1000)


def test_dry_run_text_names_band_snr_and_handover(tmp_path):
    text = describe(load_moe(_write(tmp_path, "edges = [0, 250, 600, 1000]")))
    assert "high" in text and "600..999" in text and "denoising_end 0.4" in text
    assert "SNR" in text


@pytest.mark.parametrize(
    ("head", "experts", "said"),
    [
        ("edges = [0, 600, 250, 1000]", THREE, "not sorted"),
        ("edges = [0, 250, 250, 1000]", THREE, "overlap"),
        ("edges = [0, 500, 1000]", THREE, "makes 2 bands but [[experts]] names 3"),
        ("edges = [0, 250, 600, 1000]\nsnr = [1.0, 2.0]", THREE, "exactly one way"),
        ("", THREE, "exactly one way"),
        ("snr = [0.25, 4.0]", THREE, "high to low SNR"),
        ("edges = [0, 1000]", '[[experts]]\nname = "a"\n', "2 to 8"),
        ("edges = [0, 500, 1000]", '[[experts]]\nname = "a"\n[[experts]]\nname = "a"\n', "named"),
        ("edges = [0, 500, 1000]", '[[experts]]\nname = "a b"\n[[experts]]\nname = "c"\n', "name"),
        ("boundary_ratio = 1.5", THREE, "boundary_ratio"),
        ("strengths = [0.35, 0.0]", THREE, "strengths"),
        ("edgez = [0, 500, 1000]", THREE, "edgez"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(tmp_path, head, experts, said):
    with pytest.raises(ConfigError) as err:
        load_moe(_write(tmp_path, head, experts=experts))
    assert said in str(err.value) and "\n" not in str(err.value)


def test_parent_steps_and_baseline_add_full_range_runs(tmp_path):
    shared = SHARED + "max_train_steps = 5\n"
    moe = load_moe(
        _write(
            tmp_path,
            "edges = [0, 250, 600, 1000]\nparent_steps = 7\nbaseline = true",
            shared=shared,
        )
    )
    assert [c.expert_name for c in moe.runs()] == ["parent", "high", "mid", "low", "baseline"]
    assert moe.parent.expert_band() == (0, 999) and moe.parent.max_train_steps == 7
    assert moe.parent.init_from is None
    assert {c.init_from for c in moe.experts} == {str(tmp_path / "out" / "parent")}
    assert moe.baseline.max_train_steps == 15 and moe.baseline.expert_band() == (0, 999)
    assert moe.baseline.init_from == str(tmp_path / "out" / "parent")  # the experts' start
    text = describe(moe)
    assert "parent" in text and "baseline" in text and "15 steps" in text


@pytest.mark.parametrize(
    ("head", "experts", "message"),
    [
        ("edges = [0, 500, 1000]\nparent_steps = 0", None, "parent_steps"),
        ("edges = [0, 500, 1000]\nbaseline = 1", None, "baseline"),
        ("edges = [0, 500, 1000]\nbaseline = true", None, "max_train_steps"),
        (
            "edges = [0, 500, 1000]",
            '[[experts]]\nname = "a"\n[[experts]]\nname = "parent"\n',
            "'parent'",
        ),
    ],
)
def test_parent_and_baseline_refusals_name_the_key(tmp_path, head, experts, message):
    two = '[[experts]]\nname = "a"\n[[experts]]\nname = "b"\n'
    with pytest.raises(ConfigError, match=message):
        load_moe(_write(tmp_path, head, experts=experts or two))


def test_config_show_prints_the_plan_then_every_run(tmp_path, capsys):
    from expertune.cli import main

    path = _write(tmp_path, "edges = [0, 250, 600, 1000]\nparent_steps = 3")
    assert main(["config", "show", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("moe plan (edges): 3 experts")
    assert [line for line in out.splitlines() if line.startswith("[")] == [
        "[parent]",
        "[high]",
        "[mid]",
        "[low]",
    ]
    assert main(["config", "show", "--config", str(path), "--json"]) == 0
    import json

    shown = json.loads(capsys.readouterr().out)
    assert shown["runs"]["mid"]["band"] == [250, 599] and shown["plan"]["edges"][1] == 250
