"""`--init_from`: an expert starts from exactly its parent's UNet (eDiff-I's split)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file
from train_support import train_args

from expertune.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def parent(train_ws, tmp_path_factory) -> Path:
    """A full-model expert trained 4 steps: its UNet differs from the base model's."""
    out = tmp_path_factory.mktemp("parent") / "out"
    assert main(train_args(train_ws, out, "--max_train_steps=4", "--learning_rate=1e-3")) == 0
    return out


def _first_step_weights(monkeypatch) -> list[dict[str, torch.Tensor]]:
    """Record the UNet's weights at its first training forward pass."""
    seen: list[dict[str, torch.Tensor]] = []
    real = UNet2DConditionModel.forward

    def hooked(self, *args, **kwargs):
        if not seen:
            seen.append({k: v.detach().clone() for k, v in self.state_dict().items()})
        return real(self, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", hooked)
    return seen


def _parent_unet(folder: Path) -> dict[str, torch.Tensor]:
    return UNet2DConditionModel.from_pretrained(folder, subfolder="unet").state_dict()


@pytest.mark.parametrize("kind", ["expert", "checkpoint", "diffusers"])
def test_expert_starts_from_exactly_the_parents_unet(train_ws, parent, tmp_path, kind, monkeypatch):
    source = {"expert": parent, "checkpoint": parent / "checkpoint-4"}.get(kind)
    if kind == "diffusers":  # a plain diffusers folder: the parent without its record
        source = tmp_path / "plain"
        shutil.copytree(parent, source, ignore=shutil.ignore_patterns("checkpoint-*"))
        (source / "expertune.json").unlink()
    expected = (
        load_file(source / "model.safetensors") if kind == "checkpoint" else _parent_unet(parent)
    )
    base = _parent_unet(train_ws / "tiny-model")
    assert any(not torch.equal(base[k], expected[k]) for k in base)  # the parent did move
    seen = _first_step_weights(monkeypatch)
    out = tmp_path / "child"
    argv = train_args(train_ws, out, "--max_train_steps=1", f"--init_from={source}")
    assert main(argv) == 0
    assert seen[0].keys() == expected.keys()
    assert all(torch.equal(seen[0][k], expected[k]) for k in expected)
    record = json.loads((out / "expertune.json").read_text())
    assert record["parent"]["path"] == str(source) and record["parent"]["kind"] == kind
    if kind == "expert":
        assert record["parent"]["steps"] == 4
    if kind == "checkpoint":
        assert record["parent"]["steps"] == 4


def test_lora_expert_freezes_the_parents_unet_under_its_adapter(train_ws, parent, tmp_path):
    from expertune.config import load_config
    from expertune.train.loop import Trainer

    out = tmp_path / "lora-child"
    cfg = load_config(
        train_ws / "config" / "stage1.env",
        argv=[f"--output_dir={out}", "--model_type=lora", "--lora_rank=4", f"--init_from={parent}"],
    )
    trainer = Trainer(cfg).setup()
    expected = _parent_unet(parent)
    merged = {}
    for name, tensor in trainer.unet.state_dict().items():
        if "lora_" in name:
            continue
        merged[name.replace(".base_layer", "")] = tensor
    assert merged.keys() == expected.keys()
    assert all(torch.equal(merged[k], expected[k]) for k in expected)
    lora_b = [t for n, t in trainer.unet.state_dict().items() if "lora_B" in n]
    assert lora_b and all(not t.any() for t in lora_b)  # the adapter starts as a no-op


def test_init_from_refusals_come_before_anything_is_written(train_ws, tmp_path, capsys):
    from expertune.models.tiny import build_tiny_sdxl_refiner

    other = build_tiny_sdxl_refiner(tmp_path / "refiner", seed=0)
    (tmp_path / "half").mkdir()
    cases = {
        str(tmp_path / "nowhere"): "no such folder",
        str(tmp_path / "half"): "neither unet/ nor model.safetensors",
        str(other): "does not fit MODEL_NAME's",
    }
    for source, message in cases.items():
        out = tmp_path / "never"
        assert main(train_args(train_ws, out, f"--init_from={source}")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0] and "init_from" in err[0], err
        assert not out.exists()
