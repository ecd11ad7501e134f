"""An eval set of two aspect ratios (portrait and landscape buckets, latents of different
sizes): eval loss, `expertune evaluate`, dataset validation and a training run's
callbacks all work, and each value equals a direct computation sample by sample."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from eval_support import direct_loss

from expertune.cli import main
from expertune.config import load_config
from expertune.evaluate.dataset_validation import DatasetSettings, DatasetValidator
from expertune.evaluate.eval_loss import eval_loss, eval_timesteps
from expertune.evaluate.eval_set import eval_set_for, validation_set_for
from expertune.evaluate.images import decode, psnr
from expertune.schedule.bands import Band
from expertune.schedule.noise import Parameterisation, training_scheduler

PORTRAIT, LANDSCAPE = (80, 64), (64, 80)  # buckets (h, w) of aspects 0.75 and 1.33 at 64 px
CPU = SimpleNamespace(
    num_processes=1,
    is_main_process=True,
    is_local_main_process=True,
    main_process_first=contextlib.nullcontext,
)


def image_size(path: Path) -> tuple[int, int]:
    from PIL import Image

    with Image.open(path) as image:
        return image.size


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, tiny_model_dir) -> Path:
    """Square training images and a held-out eval set of 96x128 and 128x96 photos."""
    from expertune.data.demo_images import make_demo_images

    root = tmp_path_factory.mktemp("aspects")
    make_demo_images(root / "train", n=3, size=64)
    for path in make_demo_images(root / "eval", n=8, size=96, seed=3):
        if image_size(path) not in {(96, 128), (128, 96)}:
            path.unlink()
            path.with_suffix(".txt").unlink()
    entries = [
        {"id": "train", "instance_data_dir": str(root / "train"), "crop": True},
        {
            "id": "held-out",
            "dataset_type": "eval",
            "instance_data_dir": str(root / "eval"),
            "crop": True,
            "crop_aspect": "closest",
            "crop_aspect_buckets": [0.75, 1.33],
        },
        {
            "id": "text",
            "dataset_type": "text_embeds",
            "default": True,
            "cache_dir": str(root / "text"),
        },
    ]
    (root / "multidatabackend.json").write_text(json.dumps(entries))
    config = {
        "pretrained_model_name_or_path": str(tiny_model_dir),
        "data_backend_config": str(root / "multidatabackend.json"),
        "cache_dir": str(root / "cache"),
        "output_dir": str(root / "out"),
        "resolution": 64,
        "aspect_bucket_alignment": 16,
        "train_batch_size": 3,
        "report_to": "none",
    }
    (root / "config.json").write_text(json.dumps(config))
    return root / "config.json"


@pytest.fixture(scope="module")
def prepared(config_file):
    """(cfg, components, TrainData) of the config, caches filled."""
    from expertune.models.load import load_components
    from expertune.train.setup import setup_data

    cfg = load_config(config_file)
    components = load_components(cfg.pretrained_model_name_or_path)
    components.unet.eval()
    return cfg, components, setup_data(cfg, components, CPU)


def expected_losses(unet, scheduler, dataset, timesteps, kind: str) -> list[float]:
    n = len(dataset)
    return [
        sum(direct_loss(unet, scheduler, dataset[i], i, t, kind) for i in range(n)) / n
        for t in timesteps
    ]


def test_the_eval_set_has_two_buckets_in_mixed_order(prepared):
    _, _, data = prepared
    eval_set = eval_set_for(data, 0.0)
    assert eval_set.held_out and len(eval_set) == 4
    shapes = [tuple(eval_set.dataset[i]["latents"].shape[1:]) for i in range(4)]
    expected = {(h // 8, w // 8) for h, w in (PORTRAIT, LANDSCAPE)}
    assert set(shapes) == expected and shapes[0] != shapes[1]  # consecutive items differ


def test_eval_loss_over_two_buckets_equals_the_per_sample_computation(prepared):
    cfg, components, data = prepared
    param = Parameterisation("v_prediction", True, "trailing")
    scheduler = training_scheduler(components.scheduler_config, param)
    dataset = eval_set_for(data, 0.0).dataset
    ts = eval_timesteps(Band(0, 999), 2)
    result = eval_loss(
        components.unet, scheduler, dataset, ts, "v_prediction", cfg.train_batch_size
    )
    expected = expected_losses(components.unet, scheduler, dataset, ts, "v_prediction")
    assert result.losses == pytest.approx(expected, rel=1e-5)


def test_evaluate_command_over_two_buckets(prepared, config_file, tiny_model_dir, tmp_path):
    _, components, data = prepared
    out = tmp_path / "eval"
    argv = ["evaluate", "--experts", str(tiny_model_dir), "--data", str(config_file)]
    assert main([*argv, "--timesteps", "2", "--out", str(out)]) == 0
    result = json.loads((out / "eval_loss.json").read_text())
    (row,) = result["bands"]
    assert result["samples"] == 4 and "eval dataset" in result["eval_set"]
    param = Parameterisation.from_scheduler_config(components.scheduler_config)
    scheduler = training_scheduler(components.scheduler_config, param)
    dataset = eval_set_for(data, 0.0).dataset
    kind = param.prediction_type
    expected = expected_losses(components.unet, scheduler, dataset, row["timesteps"], kind)
    assert row["expert_losses"] == pytest.approx(expected, rel=1e-5)


def test_dataset_validation_over_two_buckets(prepared):
    _, components, data = prepared
    unet, vae = components.unet, components.vae
    scheduler = training_scheduler(
        components.scheduler_config, Parameterisation("v_prediction", True, "trailing")
    )
    band = Band(350, 999)
    settings = DatasetSettings(4, 3, 1.0, 0.0, seed=5, prediction_type="v_prediction")
    samples = validation_set_for(data, 4)
    first_inputs: list[torch.Tensor] = []

    def hook(module, args):
        if int(args[1].flatten()[0]) == band.hi:
            first_inputs.append(args[0].detach().clone())

    handle = unet.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            results = DatasetValidator(unet, vae, scheduler, band, 1000, settings, unet).run(
                samples
            )
    finally:
        handle.remove()
    assert len(results) == 4 and len(first_inputs) == 4
    sizes = set()
    for i, result in enumerate(results):
        latents = samples.dataset[i]["latents"][None]
        noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(5 + i))
        noised = scheduler.add_noise(latents, noise, torch.tensor([band.hi]))
        torch.testing.assert_close(first_inputs[i], noised)
        h, w = (8 * s for s in latents.shape[2:])
        assert result.refined.size == (w, h) and result.panel.height == h + 12
        assert result.psnr == pytest.approx(psnr(decode(vae, latents)[0], result.refined))
        assert result.chain_psnr is not None
        sizes.add((h, w))
    assert sizes == {PORTRAIT, LANDSCAPE}


@pytest.mark.slow
def test_training_evaluates_and_validates_over_two_buckets(config_file, tmp_path):
    out = tmp_path / "run"
    flags = ["--max_train_steps=2", "--checkpointing_steps=0", "--eval_steps_interval=2"]
    flags += ["--eval_timesteps=3", "--validation_using_datasets", "--validation_steps=2"]
    flags += ["--num_validation_images=4", "--validation_num_inference_steps=4"]
    assert main(["train", "--config", str(config_file), f"--output_dir={out}", *flags]) == 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    (record,) = [r for r in lines if r.get("kind") == "eval"]
    assert record["samples"] == 4 and len(record["losses"]) == 3
    manifest = json.loads((out / "validation" / "step-2" / "validation.json").read_text())
    assert len([e for e in manifest["images"] if e["kind"] == "dataset"]) == 4
