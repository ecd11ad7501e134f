"""The seed's workflow on the tiny model: two experts trained, reloaded with plain diffusers,
and chained with the seed's own inference snippet."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from expertune.app.demo import prepare_workdir
from expertune.cli import main

pytestmark = pytest.mark.slow
STEPS = 4


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("seed")
    prepare_workdir(work, STEPS, images=8)
    return work


@pytest.fixture(scope="module")
def trained(work) -> Path:
    # Batch size 1 for stage one: a peer draws over all 1000 timesteps there.
    assert (
        main(
            [
                "train",
                "--config",
                str(work / "config/stage1.env"),
                "--train_batch_size=1",
                "--checkpointing_steps=2",
            ]
        )
        == 0
    )
    assert main(["train", "--config", str(work / "config/stage2.env")]) == 0
    return work


def _metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_each_expert_trains_only_its_band(trained):
    stage1, stage2 = _metrics(trained / "stage1"), _metrics(trained / "stage2")
    assert [m["step"] for m in stage1] == list(range(1, STEPS + 1))
    assert all(350 <= m["timestep_min"] <= m["timestep_max"] <= 999 for m in stage1)
    assert all(0 <= m["timestep_min"] <= m["timestep_max"] <= 349 for m in stage2)
    for m in stage1 + stage2:
        assert set(m) >= {"step", "loss", "lr", "timestep_min", "timestep_max", "samples_per_s"}
        assert m["loss"] > 0 and m["samples_per_s_synced"] > 0  # device-synced, per flush


def test_saved_pipeline_is_complete_and_carries_parameterisation(trained):
    for stage, role, band in (("stage1", "base", [350, 999]), ("stage2", "refiner", [0, 349])):
        out = trained / stage
        index = json.loads((out / "model_index.json").read_text())
        for name in ("unet", "vae", "text_encoder", "text_encoder_2", "tokenizer", "scheduler"):
            assert index[name][0] is not None and index[name][1] is not None, name
        sched = json.loads((out / "scheduler/scheduler_config.json").read_text())
        assert sched["prediction_type"] == "v_prediction"
        assert sched["rescale_betas_zero_snr"] is True
        assert sched["timestep_spacing"] == "trailing"
        record = json.loads((out / "expertune.json").read_text())
        assert record["role"] == role and record["band"] == band
        assert record["format"] == 2 and record["plan"]["edges"] == [0, 350, 1000]
        assert record["expert_index"] == (1 if role == "base" else 0)
        assert record["handover_fraction"] == 0.65


def test_stage_two_reuses_the_cache(trained):
    s1 = json.loads((trained / "stage1/run_summary.json").read_text())
    s2 = json.loads((trained / "stage2/run_summary.json").read_text())
    assert s1["encoder_forward_passes"] > 0 and s1["cache_misses"] > 0
    assert s2["encoder_forward_passes"] == 0
    assert s2["cache_misses"] == 0 and s2["cache_hits"] > 0
    assert s2["steps"] == STEPS and s2["wall_s"] > 0 and s2["samples_per_s"] > 0


def test_seed_inference_snippet_runs_on_both_experts(trained):
    from diffusers import (
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UniPCMultistepScheduler,
    )

    stage_1, stage_2 = str(trained / "stage1"), str(trained / "stage2")
    base_model_power = 1 - 0.35
    pipe = StableDiffusionXLPipeline.from_pretrained(stage_1, add_watermarker=False)
    pipe.scheduler = UniPCMultistepScheduler.from_pretrained(stage_1, subfolder="scheduler")
    img2img = StableDiffusionXLImg2ImgPipeline.from_pretrained(stage_2, add_watermarker=False)
    img2img.scheduler = UniPCMultistepScheduler.from_pretrained(stage_1, subfolder="scheduler")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    latents = pipe(
        prompt="a red circle",
        num_inference_steps=10,
        denoising_end=base_model_power,
        guidance_scale=9.2,
        guidance_rescale=0.7,
        output_type="latent",
        height=64,
        width=64,
    ).images
    image = img2img(
        prompt="a red circle",
        num_inference_steps=10,
        denoising_start=base_model_power,
        guidance_scale=9.2,
        guidance_rescale=0.7,
        image=latents,
    ).images[0]
    assert image.size == (64, 64)


def test_generate_command_writes_an_image(trained, tmp_path):
    out = tmp_path / "demo.png"
    code = main(
        [
            "generate",
            "--base",
            str(trained / "stage1"),
            "--refiner",
            str(trained / "stage2"),
            "--prompt",
            "a green square",
            "--steps",
            "6",
            "--height",
            "64",
            "--width",
            "64",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    from PIL import Image

    assert Image.open(out).size == (64, 64)


def test_resume_continues_and_matches_an_uninterrupted_run(trained, tmp_path):
    env = str(trained / "config/stage1.env")
    common = ["--train_batch_size=1", "--checkpointing_steps=2"]
    # Interrupted: stop after checkpoint-2, then resume to STEPS.
    part = str(tmp_path / "part")
    assert (
        main(["train", "--config", env, *common, f"--output_dir={part}", "--max_train_steps=2"])
        == 0
    )
    assert (
        main(
            [
                "train",
                "--config",
                env,
                *common,
                f"--output_dir={part}",
                f"--max_train_steps={STEPS}",
                "--resume_from_checkpoint=latest",
            ]
        )
        == 0
    )
    steps = [m["step"] for m in _metrics(Path(part))]
    assert steps == list(range(1, STEPS + 1))
    summary = json.loads((Path(part) / "run_summary.json").read_text())
    assert summary["resumed_from"].endswith("checkpoint-2")
    from safetensors.torch import load_file

    resumed = load_file(Path(part) / "unet/diffusion_pytorch_model.safetensors")
    straight = load_file(trained / "stage1/unet/diffusion_pytorch_model.safetensors")
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


def test_mismatched_parameterisation_is_refused(trained, tmp_path, capsys):
    other = tmp_path / "eps"
    env = str(trained / "config/stage2.env")
    assert (
        main(
            [
                "train",
                "--config",
                env,
                f"--output_dir={other}",
                "--max_train_steps=1",
                "--prediction_type=epsilon",
            ]
        )
        == 0
    )
    capsys.readouterr()  # drop the training run's progress bars
    code = main(
        [
            "generate",
            "--base",
            str(trained / "stage1"),
            "--refiner",
            str(other),
            "--prompt",
            "x",
            "--steps",
            "4",
            "--out",
            str(tmp_path / "x.png"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "parameterisation" in err[0]
    assert not (tmp_path / "x.png").exists()


def test_chain_shares_encoders_between_experts(trained):
    from expertune.pipeline.chain import ExpertChain

    chain = ExpertChain(trained / "stage1", trained / "stage2")
    assert chain.refiner.vae is chain.base.vae
    assert chain.refiner.text_encoder_2 is chain.base.text_encoder_2
    assert chain.refiner.unet is not chain.base.unet


def test_resume_on_changed_data_says_the_order_differs(trained, tmp_path, caplog):
    env = str(trained / "config/stage1.env")
    out = f"--output_dir={tmp_path / 'changed'}"
    assert main(["train", "--config", env, out, "--train_batch_size=1", "--max_train_steps=2"]) == 0
    caplog.clear()
    with caplog.at_level("WARNING", logger="expertune.train.loop"):
        assert (
            main(
                [
                    "train",
                    "--config",
                    env,
                    out,
                    "--train_batch_size=2",
                    "--max_train_steps=3",
                    "--resume_from_checkpoint=latest",
                ]
            )
            == 0
        )
    assert any("training data changed since checkpoint-2" in r.message for r in caplog.records)
