"""--base_model_precision: the frozen base UNet quantised by optimum-quanto before the
adapter goes on; the adapter stays float32 and alone trainable."""

from __future__ import annotations

import pytest
import torch

from expertune.errors import ConfigError
from expertune.models import quantize
from expertune.models.lora import add_lora
from expertune.models.quantize import (
    adapter_to_float32,
    check_quanto_installed,
    is_quantised,
    quantize_base,
)


def _inputs(unet, batch: int = 1):
    g = torch.Generator().manual_seed(0)
    c = unet.config
    pooled = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim
    return (
        torch.randn(batch, 4, 8, 8, generator=g),
        torch.tensor([10] * batch),
        {
            "encoder_hidden_states": torch.randn(batch, 77, c.cross_attention_dim, generator=g),
            "added_cond_kwargs": {
                "text_embeds": torch.randn(batch, pooled, generator=g),
                "time_ids": torch.randn(batch, 6, generator=g),
            },
        },
    )


@pytest.fixture
def unet(tiny_model_dir):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet")


@pytest.mark.parametrize(("precision", "storage"), [("int8-quanto", torch.int8)])
def test_int8_base_stores_int8_and_stays_close(unet, precision, storage):
    from optimum.quanto import QModuleMixin

    x, t, cond = _inputs(unet)
    with torch.no_grad():
        before = unet(x, t, **cond).sample
    linears = sum(isinstance(m, torch.nn.Linear | torch.nn.Conv2d) for m in unet.modules())
    assert quantize_base(unet, precision) == linears  # every Linear and Conv2d
    assert is_quantised(unet)
    layer = next(m for m in unet.modules() if isinstance(m, QModuleMixin))
    assert layer.weight._data.dtype == storage
    assert not any(p.requires_grad for p in unet.parameters())
    with torch.no_grad():
        after = unet(x, t, **cond).sample
    error = (after - before).abs().max() / before.abs().max()
    assert 0 < error < 0.05  # quantised for real, and still the same model


def test_adapter_on_a_quantised_base_is_float32_and_alone_trainable(unet):
    quantize_base(unet, "int8-quanto", torch.bfloat16)
    add_lora(unet, rank=4, alpha=4)
    assert adapter_to_float32(unet) > 0  # peft made them bf16, like the base they wrap
    trainable = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert {p.dtype for p in trainable.values()} == {torch.float32}
    with torch.no_grad():
        for n, p in trainable.items():
            if "lora_B" in n:
                p.normal_(0, 0.01)
    x, t, cond = _inputs(unet, batch=1)  # batch 1: the strided proj_in input (see the hook)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = unet(x, t, **cond).sample.float().pow(2).mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


def test_missing_package_is_one_line(monkeypatch):
    monkeypatch.setattr(quantize.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError) as info:
        check_quanto_installed("int8-quanto")
    message = str(info.value)
    assert "\n" not in message and "pip install 'expertune[quanto]'" in message
    check_quanto_installed("no_change")  # nothing asked, nothing needed


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--base_model_precision=int8-quanto"], "needs MODEL_TYPE=lora"),
        (["--model_type=lora", "--base_model_precision=nf4-bnb"], "base_model_precision"),
    ],
)
def test_refused_settings(tmp_path, flags, expected):
    from expertune.config import load_config

    base = [
        "--pretrained_model_name_or_path=expertune/tiny-sdxl",
        f"--instance_data_dir={tmp_path}",
        f"--output_dir={tmp_path / 'out'}",
    ]
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(None, base + flags)
    assert "\n" not in str(info.value)
