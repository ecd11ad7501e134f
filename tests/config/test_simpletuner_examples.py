"""SimpleTuner's own example configs, adapted only as issue 9 allows, train to the end on
the embedded tiny model offline; the ones that cannot are refused in one line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from expertune.cli import main
from expertune.config import load_config

DATA = Path(__file__).parent / "data" / "simpletuner"


def _original(name: str) -> dict:
    return {k.removeprefix("--"): v for k, v in json.loads((DATA / name).read_text()).items()}


def adapt(config: dict, work: Path, out: Path) -> dict:
    """The issue's changes: model name, data config, output folder, resolution, steps.

    Also, with the reason: a lycoris_config path points at our copy of the file the
    example names; a non-SDXL model_family (flux, kolors) becomes sdxl, since the tiny
    model is SDXL; push_to_hub is switched off because no hub exists offline (the hub
    check itself is tests/train/test_hub.py).
    """
    changed = dict(config)
    changed |= {
        "pretrained_model_name_or_path": "expertune/tiny-sdxl",
        "data_backend_config": str(work / "config/multidatabackend.json"),
        "output_dir": str(out),
        "resolution": 64,
        "max_train_steps": 2,
    }
    if "validation_resolution" in changed:
        changed["validation_resolution"] = "64x64"
    if "lycoris_config" in changed:
        name = Path(changed["lycoris_config"]).name
        mine = DATA / (
            "sdxl.lycoris-lokr.lycoris_config.json"
            if "sdxl" in changed["lycoris_config"]
            else f"{name}.example"
        )
        changed["lycoris_config"] = str(mine)
    if changed.get("model_family") not in (None, "sdxl", "sdxl-refiner"):
        changed["model_family"] = "sdxl"
    if str(changed.get("push_to_hub")).lower() == "true":
        changed["push_to_hub"] = False
        changed["push_checkpoints_to_hub"] = False
    return changed


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    from expertune.app.demo import prepare_workdir

    work = tmp_path_factory.mktemp("st-examples")
    prepare_workdir(work, 3, images=2)
    return work


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize("name", ["config.json.example.orig", "sdxl.lycoris-lokr.orig.json"])
def test_every_key_is_accepted(name, work, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="expertune.config"):
        cfg = load_config(_write(tmp_path, adapt(_original(name), work, tmp_path / "out")))
    assert cfg.lora_type == "lycoris" and cfg.resume_from_checkpoint == "latest"
    notices = [r.getMessage() for r in caplog.records]
    assert all(" has no effect in expertune: " in n for n in notices)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["config.json.example.orig", "sdxl.lycoris-lokr.orig.json"])
def test_example_trains_to_the_end(name, work, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path))  # wandb: no key here, so offline
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    from accelerate.state import AcceleratorState

    # These examples use mixed_precision=bf16; accelerate keeps one state per process,
    # so another test's fp32 run in this process must not pin it.
    AcceleratorState._reset_state(reset_partial_state=True)
    out = tmp_path / "out"
    path = _write(tmp_path, adapt(_original(name), work, out))
    try:
        assert main(["train", "--config", str(path)]) == 0
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("trained 2 steps in this run in ") and "(2 in total)" in last
    assert (out / "model_index.json").is_file()
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    assert json.loads((out / "lycoris_config.json").read_text())["algo"] == "lokr"


@pytest.mark.slow
def test_kolors_example_trains_on_a_quantised_base(work, tmp_path, capsys):
    """base_model_precision=int8-quanto: the LoRA trains on a quanto-int8 base (hooked),
    and the published pipeline is the unquantised base with the adapter merged."""
    from accelerate.state import AcceleratorState
    from optimum.quanto import QLinear

    import expertune.train.setup as setup

    seen = []
    real = setup.add_adapter

    def spy(cfg, unet):  # the base the adapter goes on, in training and when publishing
        seen.append(isinstance(unet.down_blocks[1].attentions[0].proj_in, QLinear))
        real(cfg, unet)

    AcceleratorState._reset_state(reset_partial_state=True)
    out = tmp_path / "out"
    config = adapt(_original("kolors.peft-lora.orig.json"), work, out)
    assert config["base_model_precision"] == "int8-quanto"
    setup.add_adapter = spy
    try:
        assert main(["train", "--config", str(_write(tmp_path, config))]) == 0
    finally:
        setup.add_adapter = real
        AcceleratorState._reset_state(reset_partial_state=True)
    assert seen == [True, False]  # trained on the quantised base, merged into a plain one
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("trained 2 steps in this run in ")
    assert (out / "pytorch_lora_weights.safetensors").is_file()
    assert json.loads((out / "unet" / "config.json").read_text())["_class_name"] == (
        "UNet2DConditionModel"
    )


@pytest.fixture(scope="module")
def cn_work(tmp_path_factory) -> Path:
    """A work folder whose dataloader config also pairs its images with conditioning
    images (cond/: an inverted copy of each, same file names)."""
    from PIL import Image, ImageOps

    from expertune.app.demo import write_configs
    from expertune.data.demo_images import make_demo_images

    work = tmp_path_factory.mktemp("st-controlnet")
    images = make_demo_images(work / "data", n=2, size=64)
    write_configs(work, steps=2)
    (work / "cond").mkdir()
    for image in images:
        ImageOps.invert(Image.open(image).convert("RGB")).save(work / "cond" / image.name)
    dataloader = work / "config" / "multidatabackend.json"
    datasets = json.loads(dataloader.read_text())
    datasets[0]["conditioning_data"] = "cond"
    datasets.append(
        {"id": "cond", "type": "local", "dataset_type": "conditioning",
         "conditioning_type": "canny", "instance_data_dir": str(work / "cond")}
    )  # fmt: skip
    dataloader.write_text(json.dumps(datasets, indent=2))
    return work


@pytest.mark.slow
def test_controlnet_example_trains_to_the_end(cn_work, tmp_path, capsys, caplog):
    """The example adapted exactly as `adapt` does; the one other change is in the work
    folder's dataloader config (the 'data config' the issue lets us change, as it points
    every example at ours): the conditioning dataset SimpleTuner's own ControlNet example
    pairs its images with (multidatabackend-controlnet-1024px.json), which a ControlNet
    cannot train without."""
    from accelerate.state import AcceleratorState
    from diffusers import ControlNetModel

    import expertune.evaluate.live as live

    seen, real = [], live.controlnet_pipeline

    def spy(trainer, controlnet, image):
        seen.append(image)
        return real(trainer, controlnet, image)

    out = tmp_path / "out"
    config = adapt(_original("sdxl.peft-controlnet-lora.orig.json"), cn_work, out)
    assert config["controlnet"] is True and config["model_type"] == "lora"
    AcceleratorState._reset_state(reset_partial_state=True)  # bf16, as the other examples
    live.controlnet_pipeline = spy
    try:
        with caplog.at_level(logging.WARNING, logger="expertune"):
            assert main(["train", "--config", str(_write(tmp_path, config))]) == 0
    finally:
        live.controlnet_pipeline = real
        AcceleratorState._reset_state(reset_partial_state=True)
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("trained 2 steps in this run in ") and "(2 in total)" in last
    loaded = ControlNetModel.from_pretrained(out / "controlnet")
    assert isinstance(loaded, ControlNetModel)
    assert (out / "controlnet" / "pytorch_lora_weights.safetensors").is_file()
    record = json.loads((out / "expertune.json").read_text())
    assert record["controlnet"]["folder"] == "controlnet" and record["model_type"] == "lora"
    assert (out / "model_index.json").is_file()  # the base pipeline beside it
    # validation at the end: the prompt rendered by the frozen UNet + the live ControlNet,
    # conditioned on training sample 0's conditioning image
    assert seen and seen[0].shape[0] == 1 and 0.0 <= float(seen[0].min()) <= 1.0
    manifest = json.loads((out / "validation" / "step-2" / "validation.json").read_text())
    kinds = {entry["kind"] for entry in manifest["images"]}
    assert kinds == {"expert"} and len(manifest["images"]) >= 1
    # ... and it is what diffusers' own ControlNet pipeline makes of the published folders
    import numpy as np
    import torch
    from diffusers import StableDiffusionXLControlNetPipeline
    from PIL import Image

    pipe = StableDiffusionXLControlNetPipeline.from_pretrained(
        out, controlnet=loaded, add_watermarker=False
    )
    image = pipe(
        config["validation_prompt"],
        image=seen[0],
        num_inference_steps=config["validation_num_inference_steps"],
        guidance_scale=config["validation_guidance"],
        guidance_rescale=config["validation_guidance_rescale"],
        generator=torch.Generator().manual_seed(config["validation_seed"]),
        height=64,
        width=64,
    ).images[0]
    saved = Image.open(out / "validation" / "step-2" / manifest["images"][0]["file"])
    diff = np.abs(np.asarray(saved, dtype=int) - np.asarray(image, dtype=int)).max()
    print(f"max pixel difference, validation vs published pipeline: {diff}")
    assert diff <= 2


def test_controlnet_example_without_conditioning_data_is_one_line(work, tmp_path):
    """With a dataloader config that has no conditioning dataset it is refused before
    anything is written, naming the key to add."""
    out = tmp_path / "out"
    config = adapt(_original("sdxl.peft-controlnet-lora.orig.json"), work, out)
    assert main(["train", "--config", str(_write(tmp_path, config))]) == 2
    assert not out.exists()
