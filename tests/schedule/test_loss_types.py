"""--loss_type l2 / huber / smooth_l1 and SimpleTuner's Huber-constant schedules."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDPMScheduler

from expertune.schedule.targets import huber_c_for, loss_for, weighted_mse


def _scheduler(zero_snr: bool = False) -> DDPMScheduler:
    return DDPMScheduler(
        beta_schedule="scaled_linear",
        beta_start=0.00085,
        beta_end=0.012,
        rescale_betas_zero_snr=zero_snr,
    )


def _batch():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    return pred, target, torch.tensor([0.5, 1.0, 2.0])


def test_l2_is_weighted_mse():
    assert loss_for("l2") is weighted_mse


@pytest.mark.parametrize("kind", ["huber", "smooth_l1"])
def test_pseudo_huber_matches_simpletuners_formula_per_sample(kind):
    pred, target, weights = _batch()
    c = torch.tensor([0.1, 0.3, 0.05])
    got = loss_for(kind, c)(pred, target, weights)
    per_sample = []
    for i in range(3):
        d2 = (pred[i] - target[i]) ** 2
        term = 2 * (torch.sqrt(d2 + c[i] ** 2) - c[i])
        per_sample.append((c[i] * term if kind == "huber" else term).mean() * weights[i])
    assert got == pytest.approx(torch.stack(per_sample).mean().item(), rel=1e-6)


def test_huber_tends_to_l2_and_smooth_l1_to_twice_l1():
    pred, target, _ = _batch()
    l2 = weighted_mse(pred, target, None)
    assert loss_for("huber", torch.full((3,), 30.0))(pred, target, None) == pytest.approx(
        l2.item(), rel=3e-3
    )
    l1 = (pred - target).abs().mean()
    assert loss_for("smooth_l1", torch.full((3,), 1e-6))(pred, target, None) == pytest.approx(
        2 * l1.item(), rel=1e-4
    )


def test_snr_schedule_is_simpletuners_and_finite_at_zero_snr():
    sched = _scheduler()
    t = torch.tensor([0, 250, 500, 999])
    abar = sched.alphas_cumprod[t]
    sigma = ((1 - abar) / abar) ** 0.5
    expected = (1 - 0.1) / (1 + sigma) ** 2 + 0.1
    assert torch.allclose(huber_c_for(sched, t, 0.1, "snr"), expected.float(), rtol=1e-5)
    zero = huber_c_for(_scheduler(zero_snr=True), torch.tensor([999]), 0.1, "snr")
    assert zero.item() == pytest.approx(0.1)


def test_exponential_and_constant_schedules():
    sched = _scheduler()
    t = torch.tensor([0, 500, 1000])
    got = huber_c_for(sched, t, 0.1, "exponential")
    alpha = -math.log(0.1) / 1000
    assert torch.allclose(got, torch.exp(-alpha * t.float()))
    assert torch.equal(huber_c_for(sched, t, 0.2, "constant"), torch.full((3,), 0.2))
