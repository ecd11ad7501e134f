"""--optimizer and --lr_scheduler: each name builds the package's own optimizer and steps;
names this device cannot run are refused in one line before training."""

from __future__ import annotations

import logging

import pytest
import torch
from diffusers.optimization import get_scheduler

from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError
from expertune.train import optimizers
from expertune.train.optimizers import build_lr_scheduler, build_optimizer, check_optimizer


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(pretrained_model_name_or_path="m", learning_rate=1e-2, **kw)


def _params() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(3))]


def _one_step(opt, params) -> None:
    loss = sum((p**2).sum() for p in params)
    loss.backward()
    opt.step()
    opt.zero_grad()


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("adamw", "torch.optim.adamw.AdamW"),
        ("adamw_bf16", "torch.optim.adamw.AdamW"),
        ("prodigy", "prodigyopt.prodigy.Prodigy"),
        ("lion", "lion_pytorch.lion_pytorch.Lion"),
        ("adafactor", "transformers.optimization.Adafactor"),
    ],
)
def test_each_optimizer_is_the_packages_own_and_steps(name, cls):
    params = _params()
    before = [p.detach().clone() for p in params]
    opt = build_optimizer(_cfg(optimizer=name), params)
    assert f"{type(opt).__module__}.{type(opt).__name__}" == cls
    _one_step(opt, params)
    assert all(not torch.equal(a, p) for a, p in zip(before, params, strict=True))


def test_adamw_bf16_makes_torchs_exact_adamw_update(caplog):
    a, b = _params(), _params()
    cfg = _cfg(optimizer="adamw_bf16")
    with caplog.at_level(logging.INFO):
        mine = build_optimizer(cfg, a)
    assert "fp32 masters" in caplog.text
    ref = torch.optim.AdamW(b, lr=1e-2, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8, fused=True)
    for _ in range(3):
        _one_step(mine, a)
        _one_step(ref, b)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_adamw8bit_without_cuda_is_one_line():
    with pytest.raises(ConfigError) as info:
        check_optimizer(_cfg(optimizer="adamw8bit"), cuda_available=False)
    message = str(info.value)
    assert "\n" not in message and "CUDA" in message and "--optimizer=adamw" in message


def test_missing_package_names_the_install(monkeypatch):
    monkeypatch.setattr(optimizers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"needs the prodigyopt package: pip install"):
        check_optimizer(_cfg(optimizer="prodigy"))


def _lrs(scheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.get_last_lr()[0])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.parametrize(
    ("name", "extra", "kw"),
    [
        ("polynomial", {"lr_power": 2.0}, {"power": 2.0}),
        ("cosine_with_restarts", {"lr_num_cycles": 3}, {"num_cycles": 3}),
        ("constant_with_warmup", {}, {}),
        ("linear", {}, {}),
    ],
)
def test_schedules_are_diffusers_own(name, extra, kw):
    cfg = _cfg(lr_scheduler=name, lr_warmup_steps=2, **extra)
    mine = build_lr_scheduler(cfg, torch.optim.SGD(_params(), lr=1e-2), 12)
    ref = get_scheduler(
        name,
        optimizer=torch.optim.SGD(_params(), lr=1e-2),
        num_warmup_steps=2,
        num_training_steps=12,
        **kw,
    )
    assert _lrs(mine, 12) == pytest.approx(_lrs(ref, 12))


def test_constant_with_warmup_steps_warms_up_and_says_so(caplog):
    cfg = _cfg(lr_scheduler="constant", lr_warmup_steps=4)
    with caplog.at_level(logging.WARNING):
        sched = build_lr_scheduler(cfg, torch.optim.SGD(_params(), lr=1e-2), 10)
    assert "using constant_with_warmup for the 4 --lr_warmup_steps" in caplog.text
    assert _lrs(sched, 6) == pytest.approx([0.0, 2.5e-3, 5e-3, 7.5e-3, 1e-2, 1e-2])


def test_adamw_is_fused_for_plain_cpu_parameters_and_matches_the_default_update():
    """torch's fused kernel (one call for every tensor) on CPU and CUDA float tensors;
    the update it makes is torch's default AdamW update to float rounding."""
    from expertune.train.optimizers import fused_ok

    cpu = [torch.nn.Parameter(torch.zeros(3))]
    assert fused_ok(cpu) and not fused_ok([])
    ints = torch.nn.Parameter(torch.zeros(3, dtype=torch.int64), requires_grad=False)
    assert not fused_ok([ints])
    assert not fused_ok([torch.nn.Parameter(torch.zeros(3, device="meta"))])
    assert build_optimizer(_cfg(), cpu).defaults["fused"]
    a, b = _params(), _params()
    mine = build_optimizer(_cfg(), a)
    ref = torch.optim.AdamW(b, lr=1e-2, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    for _ in range(3):
        _one_step(mine, a)
        _one_step(ref, b)
    assert all(torch.allclose(x, y, rtol=0, atol=1e-6) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
def test_torch_compile_trains_the_same_steps_in_place(train_ws, tmp_path):
    """Compiled through dynamo (the eager backend: CPU-cheap, same kernels), a run records
    the same losses as an uncompiled one and publishes the same weights under the same names."""
    from train_support import metrics, train_args, unet_weights

    from expertune.cli import main

    plain, compiled = tmp_path / "plain", tmp_path / "compiled"
    assert main(train_args(train_ws, plain, "--max_train_steps=2")) == 0
    flags = ("--max_train_steps=2", "--torch_compile", "--torch_compile_backend=eager")
    from torch._dynamo.utils import counters

    counters.clear()
    assert main(train_args(train_ws, compiled, *flags)) == 0
    assert counters["stats"]["unique_graphs"] > 0  # dynamo really captured the UNet
    assert [r["loss"] for r in metrics(plain)] == [r["loss"] for r in metrics(compiled)]
    a, b = unet_weights(plain), unet_weights(compiled)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
