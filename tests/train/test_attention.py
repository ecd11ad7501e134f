"""Training attends with torch's scaled_dot_product_attention (SDPA: flash / memory-
efficient kernels on a GPU), full and LoRA, with gradient checkpointing too: counted where
the UNet calls it during real training steps."""

from __future__ import annotations

import pytest
import torch
from train_support import train_args

from expertune.config import load_config


@pytest.mark.parametrize(
    "flags",
    [(), ("--model_type=lora", "--lora_rank=4", "--gradient_checkpointing")],
    ids=["full", "lora-checkpointed"],
)
def test_every_attention_of_a_training_step_is_sdpa(train_ws, tmp_path, monkeypatch, flags):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from expertune.train.loop import Trainer

    args = train_args(train_ws, tmp_path / "out", "--max_train_steps=1", *flags)[3:]
    trainer = Trainer(load_config(str(train_ws / "config" / "stage1.env"), args)).setup()
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    processors = unet.attn_processors
    assert processors and all(isinstance(p, AttnProcessor2_0) for p in processors.values())
    calls = [0]
    real = torch.nn.functional.scaled_dot_product_attention

    def counted(*args, **kwargs):
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", counted)
    trainer.train()
    # each attention layer once in the forward (and again when checkpointing recomputes)
    assert calls[0] >= len(processors), (calls[0], len(processors))
