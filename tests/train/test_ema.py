"""--use_ema: diffusers' EMAModel on the device, checkpointed, resumed exactly, published."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from expertune.cli import main
from expertune.train.ema import FILE, ExpertEMA


def test_ema_follows_diffusers_decay_and_swaps_back():
    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    named = dict(layer.named_parameters())
    ema = ExpertEMA(named, decay=0.9)
    expected = {n: p.detach().clone() for n, p in named.items()}
    for step in range(1, 5):
        with torch.no_grad():
            for p in named.values():
                p.add_(1.0)
        ema.step()
        n = step - 1  # diffusers: the first update copies the weights
        decay = 0.0 if n <= 0 else min(0.9, (1 + n) / (10 + n))
        for n, p in named.items():
            expected[n] = decay * expected[n] + (1 - decay) * p.detach()
    live = {n: p.detach().clone() for n, p in named.items()}
    with ema.swapped():
        for n, p in named.items():
            assert torch.allclose(p, expected[n], atol=1e-6)
    assert all(torch.equal(p, live[n]) for n, p in named.items())
    saved = ema.tensors()
    other = ExpertEMA(dict(torch.nn.Linear(3, 2).named_parameters()), decay=0.9)
    other.load(saved)
    assert other.model.optimization_step == 4
    assert all(
        torch.equal(a, b)
        for a, b in zip(other.model.shadow_params, ema.model.shadow_params, strict=True)
    )


@pytest.fixture
def work(train_ws):
    """The session's training workspace (tests/train/conftest.py)."""
    return train_ws


def _train(work: Path, out: Path, *flags: str) -> Path:
    env = str(work / "config/stage1.env")
    args = ["--use_ema", "--ema_decay=0.9", "--learning_rate=1e-3", *flags]
    assert main(["train", "--config", env, f"--output_dir={out}", *args]) == 0
    return out


@pytest.mark.slow
def test_published_pipeline_holds_the_ema_and_resume_is_exact(work, tmp_path):
    straight = _train(work, tmp_path / "s", "--max_train_steps=3")
    ema = load_file(straight / "checkpoint-3" / FILE)
    raw = load_file(straight / "checkpoint-3/model.safetensors")
    published = load_file(straight / "unet/diffusion_pytorch_model.safetensors")
    assert all(torch.equal(published[k], ema[k]) for k in raw)
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)
    assert json.loads((straight / "expertune.json").read_text())["weights"] == "ema"
    part = _train(work, tmp_path / "r", "--max_train_steps=2")
    _train(work, part, "--max_train_steps=3", "--resume_from_checkpoint=latest")
    again = load_file(part / "checkpoint-3" / FILE)
    assert all(torch.equal(again[k], ema[k]) for k in ema)
