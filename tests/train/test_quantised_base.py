"""A LoRA trained on an int8-quanto base (--base_model_precision) is published merged into
the *unquantised* base: exactly what diffusers' own load_lora_weights + fuse_lora make of
the adapter file beside it, with no quanto layer left in the saved UNet."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file
from train_support import max_abs_diff, metrics, train_args, unet_weights

from expertune.cli import main


def test_published_model_is_the_plain_base_plus_the_adapter(train_ws, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    out = tmp_path / "out"
    flags = ["--model_type=lora", "--lora_rank=4", "--learning_rate=1e-3", "--max_train_steps=3"]
    assert main(train_args(train_ws, out, *flags, "--base_model_precision=int8-quanto")) == 0
    plain = tmp_path / "plain"
    assert main(train_args(train_ws, plain, *flags)) == 0
    quantised, exact = metrics(out), metrics(plain)
    # the same first batch and noise: the losses differ by the quantisation error only
    assert quantised[0]["loss"] != exact[0]["loss"]
    assert abs(quantised[0]["loss"] - exact[0]["loss"]) < 0.02 * exact[0]["loss"]

    adapter = load_file(out / "pytorch_lora_weights.safetensors")
    assert {v.dtype for v in adapter.values()} == {torch.float32}
    assert any(float(v.abs().max()) > 0 for k, v in adapter.items() if "lora.up" in k)
    config = json.loads((out / "unet" / "config.json").read_text())
    assert config["_class_name"] == "UNet2DConditionModel"
    pipe = StableDiffusionXLPipeline.from_pretrained(train_ws / "tiny-model")
    pipe.load_lora_weights(out)
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    reference = {k: v.detach() for k, v in pipe.unet.state_dict().items()}
    assert max_abs_diff(unet_weights(out), reference) < 1e-6
