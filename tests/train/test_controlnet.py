"""ControlNet training (--controlnet): the ControlNet sees each sample's own conditioning
image, the frozen UNet its residuals, the zero convolutions train, a resume is exact,
and the user errors are one line before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageOps

from expertune.cli import main
from expertune.config import load_config
from expertune.data.conditioning_images import KEY
from expertune.data.images import plan_crop, render


def add_conditioning(work: Path, skip: str | None = None) -> Path:
    """cond/: an inverted copy of every image of data/ (same names; `skip` left out), and
    a dataloader config pairing data/ with it."""
    cond = work / "cond"
    cond.mkdir(exist_ok=True)
    for image in sorted((work / "data").glob("*.png")):
        if image.name != skip:
            ImageOps.invert(Image.open(image).convert("RGB")).save(cond / image.name)
    datasets = json.loads((work / "config" / "multidatabackend.json").read_text())
    datasets[0]["conditioning_data"] = "edges"
    datasets.append(
        {"id": "edges", "type": "local", "dataset_type": "conditioning",
         "conditioning_type": "canny", "instance_data_dir": str(cond)}
    )  # fmt: skip
    path = work / "config" / "controlnet.json"
    path.write_text(json.dumps(datasets, indent=2))
    return path


@pytest.fixture(scope="module")
def cn_ws(tmp_path_factory, tiny_model_dir) -> Path:
    from expertune.app.demo import write_configs
    from expertune.data.demo_images import make_demo_images

    work = tmp_path_factory.mktemp("cn-ws")
    make_demo_images(work / "data", n=3, size=64)
    write_configs(work, steps=2)
    add_conditioning(work)
    return work


def _config(ws: Path, out: Path, **extra) -> Path:
    config = {
        "pretrained_model_name_or_path": "expertune/tiny-sdxl",
        "data_backend_config": str(ws / "config" / "controlnet.json"),
        "output_dir": str(out),
        "cache_dir": str(ws / "cache"),
        "resolution": 64,
        "controlnet": True,
        "model_type": "lora",
        "lora_rank": 4,
        "max_train_steps": 2,
        "train_batch_size": 1,
        "report_to": "none",
        "learning_rate": 1e-4,
    } | extra
    path = out.parent / f"{out.name}.json"
    path.write_text(json.dumps(config))
    return path


def _trainer(path: Path):
    from expertune.train.loop import Trainer

    return Trainer(load_config(path)).setup()


def test_controlnet_gets_each_samples_conditioning_and_the_unet_its_residuals(cn_ws, tmp_path):
    trainer = _trainer(_config(cn_ws, tmp_path / "out", max_train_steps=3))
    data = trainer.data.dataset
    seen_cond, seen_unet, seen_latents = [], [], []

    def on_controlnet(_module, _args, kwargs):
        seen_cond.append(kwargs["controlnet_cond"].detach().clone())

    def on_unet(_module, _args, kwargs):
        seen_unet.append(
            (
                kwargs.get("down_block_additional_residuals"),
                kwargs.get("mid_block_additional_residual"),
            )
        )

    real = trainer._predict

    def predict(noisy, t, batch):
        seen_latents.append(batch["latents"].detach().clone())
        return real(noisy, t, batch)

    trainer._predict = predict
    h1 = trainer.unet.register_forward_pre_hook(on_controlnet, with_kwargs=True)
    h2 = trainer.frozen_unet.register_forward_pre_hook(on_unet, with_kwargs=True)
    try:
        trainer.train()
    finally:
        h1.remove(), h2.remove()
    assert len(seen_cond) == len(seen_unet) == len(seen_latents) == 3
    samples = [data[i] for i in range(len(data.items))]
    for cond, latents in zip(seen_cond, seen_latents, strict=True):
        (index,) = [i for i, s in enumerate(samples) if torch.equal(s["latents"], latents[0])]
        cached = samples[index][KEY]
        assert torch.equal(cond[0], cached)  # this sample's own conditioning image
        # ... which is the conditioning file of the same name, cropped as its image was
        # (the crop corner its time ids record), in [0, 1]
        item = data.items[index]
        image = Image.open(cn_ws / "cond" / item.path.name).convert("RGB")
        plan = plan_crop(image.height, image.width, item.bucket, "center")
        assert (plan.top, plan.left) == tuple(int(v) for v in item.time_ids[2:4])
        assert torch.allclose(cached, (render(image, plan) + 1) / 2, atol=1e-6)
        # and it shows what the training image shows there (cond/ holds inverted copies)
        train = (render(Image.open(item.path).convert("RGB"), plan) + 1) / 2
        assert float((cached - (1 - train)).abs().mean()) < 0.01
        assert float(cached.min()) >= 0 and float(cached.max()) <= 1
    for down, mid in seen_unet:
        assert down is not None and mid is not None
        assert len(down) == len(trainer.unet.controlnet_down_blocks)
    assert not any(p.requires_grad for p in trainer.frozen_unet.parameters())


def _residuals(controlnet, sample: dict) -> list[torch.Tensor]:
    from expertune.models.controlnet import controlnet_residuals

    batch = {k: v[None] for k, v in sample.items()}
    noisy = torch.randn_like(batch["latents"], generator=None)
    with torch.no_grad():
        down, mid = controlnet_residuals(controlnet, noisy, torch.tensor([500]), batch, batch[KEY])
    return [*down, mid]


def test_zero_convolutions_train_at_a_high_learning_rate(cn_ws, tmp_path):
    from expertune.models.controlnet import make_controlnet, merged_copy

    trainer = _trainer(_config(cn_ws, tmp_path / "out", max_train_steps=3, learning_rate=1e-2))
    sample = trainer.data.dataset[0]
    fresh = make_controlnet(trainer.components.unet)
    assert all(float(r.abs().max()) == 0 for r in _residuals(fresh, sample))  # zero-initialised
    trainer.train()
    torch.manual_seed(0)
    trained = _residuals(trainer.unet, sample)
    moved = [float(r.abs().max()) for r in trained]
    assert all(m > 0 for m in moved), moved
    # the published copy (LoRA merged, whole-trained modules in place) answers the same
    lora_b = [p for n, p in trainer.unet.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().max()) > 0 for p in lora_b)  # the merge is not a no-op
    published = merged_copy(trainer.unet)
    torch.manual_seed(0)
    merged = _residuals(published, sample)
    assert max(float((a - b).abs().max()) for a, b in zip(trained, merged, strict=True)) < 1e-5


@pytest.mark.slow
def test_published_controlnet_loads_and_a_resume_is_exact(cn_ws, tmp_path):
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--config", str(_config(cn_ws, straight, max_train_steps=4))]) == 0
    two = _config(cn_ws, resumed, max_train_steps=2, checkpointing_steps=1)
    assert main(["train", "--config", str(two)]) == 0
    four = _config(cn_ws, resumed, max_train_steps=4, resume_from_checkpoint="latest")
    assert main(["train", "--config", str(four)]) == 0
    a = load_file(straight / "controlnet" / "diffusion_pytorch_model.safetensors")
    b = load_file(resumed / "controlnet" / "diffusion_pytorch_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    loaded = ControlNetModel.from_pretrained(straight / "controlnet")
    record = json.loads((straight / "expertune.json").read_text())
    assert record["controlnet"]["folder"] == "controlnet"
    assert (straight / record["controlnet"]["adapter"]).is_file()
    assert isinstance(loaded, ControlNetModel)


def test_controlnet_without_conditioning_data_is_one_line(cn_ws, tmp_path, capsys):
    out = tmp_path / "out"
    path = _config(cn_ws, out, data_backend_config=str(cn_ws / "config" / "multidatabackend.json"))
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any(
        "--controlnet=true needs conditioning images" in line and '"conditioning_data"' in line
        for line in err
    )
    assert not out.exists()


def test_missing_conditioning_image_is_one_line_naming_it(tmp_path, capsys):
    from expertune.app.demo import write_configs
    from expertune.data.demo_images import make_demo_images

    paths = make_demo_images(tmp_path / "data", n=2, size=64)
    write_configs(tmp_path, steps=2)
    add_conditioning(tmp_path, skip=paths[1].name)
    out = tmp_path / "out"
    path = _config(tmp_path, out)
    assert main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"training image {paths[1]} has no conditioning image in {tmp_path / 'cond'}" in err
    assert not out.exists()


def test_conditioning_data_without_controlnet_is_refused(cn_ws, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["train", "--config", str(_config(cn_ws, out, controlnet=False))]) == 2
    assert "names conditioning_data, which only --controlnet=true" in capsys.readouterr().err
    assert not out.exists()


def test_starts_from_a_given_controlnet_folder(cn_ws, tmp_path, capsys):
    from expertune.models.controlnet import make_controlnet
    from expertune.models.load import load_components

    given = make_controlnet(load_components("expertune/tiny-sdxl", family="sdxl").unet)
    with torch.no_grad():
        given.controlnet_mid_block.weight.fill_(0.5)  # not what from_unet makes
    given.save_pretrained(tmp_path / "given")
    path = _config(
        cn_ws,
        tmp_path / "out",
        model_type="full",
        controlnet_model_name_or_path=str(tmp_path / "given"),
    )
    trainer = _trainer(path)
    assert torch.all(trainer.unet.controlnet_mid_block.weight == 0.5)
    assert trainer.unet.controlnet_mid_block.weight.requires_grad  # full: all of it trains
    bad = _config(cn_ws, tmp_path / "bad", controlnet_model_name_or_path=str(cn_ws / "data"))
    assert main(["train", "--config", str(bad)]) == 2
    assert "is not a diffusers ControlNet folder (no config.json)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
