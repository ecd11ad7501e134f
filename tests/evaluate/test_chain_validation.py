"""Stage-one validation through stage two: the refiner's weights decide the chain image,
a refiner still training is read from its checkpoint, and a missing one falls back."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from expertune.evaluate.validation import ValidationCallback

pytestmark = pytest.mark.slow
UNET_FILE = Path("unet") / "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def trainer(workspace, tmp_path_factory):
    """Stage one set up (model, data, schedule) but not trained: validation needs no more."""
    from expertune.config import load_config
    from expertune.train.loop import Trainer

    out = tmp_path_factory.mktemp("chain") / "stage1"
    flags = [f"--output_dir={out}", "--validation_prompt=a red circle"]
    flags += ["--validation_num_inference_steps=6", "--num_validation_images=1"]
    return Trainer(load_config(workspace / "config" / "stage1.env", flags)).setup()


def render(trainer, refiner: Path) -> tuple[dict, dict[str, bytes]]:
    """Validate with `refiner` as --validation_refiner: (manifest, image bytes by kind)."""
    cfg = trainer.cfg.model_copy(update={"validation_refiner": str(refiner)})
    manifest = ValidationCallback(cfg).validate(trainer)
    folder = trainer.output_dir / "validation" / "step-0"
    images = {}
    for entry in manifest["images"]:
        with Image.open(folder / entry["file"]) as image:
            images[entry["kind"]] = image.tobytes()
    return manifest, images


def perturbed_copy(refiner: Path, dest: Path) -> Path:
    shutil.copytree(refiner, dest)
    weights = load_file(dest / UNET_FILE)
    g = torch.Generator().manual_seed(0)
    for name, value in weights.items():
        weights[name] = value + 0.05 * torch.randn(value.shape, generator=g)
    save_file(weights, dest / UNET_FILE, metadata={"format": "pt"})
    return dest


def as_training_checkpoint(refiner: Path, dest: Path, step: int = 7) -> Path:
    """An OUTPUT_DIR of a refiner in training: one sealed checkpoint with its UNet tensors."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(refiner / "unet")
    folder = dest / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    save_file(
        {n: p.detach().contiguous() for n, p in unet.named_parameters()},
        folder / "model.safetensors",
    )
    (folder / "state.json").write_text(json.dumps({"step": step, "run_id": ""}))
    (folder / "COMPLETE").write_text("{}")
    return dest


def test_the_chain_uses_the_refiners_weights(trainer, refiner_dir, tmp_path):
    manifest, first = render(trainer, refiner_dir)
    assert set(first) == {"expert", "chain"} and manifest["refiner"] == str(refiner_dir)
    _, changed = render(trainer, perturbed_copy(refiner_dir, tmp_path / "perturbed"))
    assert changed["expert"] == first["expert"]
    assert changed["chain"] != first["chain"]


def test_a_refiner_in_training_is_read_from_its_checkpoint(trainer, refiner_dir, tmp_path):
    _, folder = render(trainer, refiner_dir)
    manifest, training = render(trainer, as_training_checkpoint(refiner_dir, tmp_path / "out"))
    assert "checkpoint-7" in manifest["refiner"]
    assert training["chain"] == folder["chain"]


def test_a_missing_refiner_falls_back_with_one_note(trainer, tmp_path, caplog):
    missing = tmp_path / "not-trained-yet"
    callback = ValidationCallback(
        trainer.cfg.model_copy(update={"validation_refiner": str(missing)})
    )
    with caplog.at_level(logging.WARNING, logger="expertune.evaluate.refiner_source"):
        first = callback.validate(trainer)
        second = callback.validate(trainer)
    assert [e["kind"] for e in first["images"]] == ["expert"]
    assert first["refiner"] is None and "validating stage one alone" in first["notes"][0]
    assert second["notes"] == first["notes"]
    notes = [r for r in caplog.records if "validating stage one alone" in r.getMessage()]
    assert len(notes) == 1
