"""--caption_dropout_probability: the empty caption is cached once; the decision is seeded
by batch index alone, so a resumed run drops the same captions as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from expertune.cli import main
from expertune.train.caption_dropout import dropped


def test_decision_is_a_function_of_seed_and_batch_only():
    a = [dropped(42, i, 4, 0.3) for i in range(500)]
    assert a == [dropped(42, i, 4, 0.3) for i in range(500)]
    assert a != [dropped(43, i, 4, 0.3) for i in range(500)]
    rate = sum(map(sum, a)) / 2000
    assert 0.26 < rate < 0.34
    assert dropped(42, 3, 4, 0.0) == [False] * 4


@pytest.fixture
def work(train_ws):
    """The session's training workspace (tests/train/conftest.py)."""
    return train_ws


def _train(work: Path, out: Path, *flags: str) -> Path:
    env = str(work / "config/stage1.env")
    args = ["--caption_dropout_probability=0.5", "--checkpointing_steps=2", *flags]
    assert main(["train", "--config", env, f"--output_dir={out}", *args]) == 0
    return out


@pytest.mark.slow
def test_dropped_samples_train_on_the_empty_captions_embeddings(work, tmp_path, monkeypatch):
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    seen: list[torch.Tensor] = []
    real = UNet2DConditionModel.forward

    def forward(self, sample, timestep, encoder_hidden_states, *a, **kw):
        seen.append(encoder_hidden_states.detach().clone())
        return real(self, sample, timestep, encoder_hidden_states, *a, **kw)

    monkeypatch.setattr(UNet2DConditionModel, "forward", forward)
    _train(work, tmp_path / "a", "--max_train_steps=6")
    monkeypatch.setattr(UNet2DConditionModel, "forward", real)
    pipe = StableDiffusionXLPipeline.from_pretrained(work / "tiny-model", add_watermarker=False)
    empty, *_ = pipe.encode_prompt("", do_classifier_free_guidance=False)
    is_empty = [torch.allclose(s[0], empty[0], atol=1e-5) for s in seen]
    assert is_empty == [dropped(42, i, 1, 0.5)[0] for i in range(6)]
    assert 0 < sum(is_empty) < 6


@pytest.mark.slow
def test_resumed_run_equals_the_uninterrupted_one(work, tmp_path):
    straight = _train(work, tmp_path / "s", "--max_train_steps=4")
    part = _train(work, tmp_path / "r", "--max_train_steps=2")
    resumed = _train(work, part, "--max_train_steps=4", "--resume_from_checkpoint=latest")
    a = load_file(straight / "checkpoint-4/model.safetensors")
    b = load_file(resumed / "checkpoint-4/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
