"""Targets and weights against diffusers' own scheduler maths."""

import pytest
import torch
from diffusers import DDPMScheduler

from expertune.schedule.noise import (
    Parameterisation,
    inference_scheduler_config,
    training_scheduler,
)
from expertune.schedule.targets import min_snr_weights, prediction_target, sample_noise, snr

SDXL = {
    "_class_name": "EulerDiscreteScheduler",
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "prediction_type": "epsilon",
}


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(4, 4, 8, 8, generator=g)
    noise = torch.randn(4, 4, 8, 8, generator=g)
    t = torch.tensor([0, 349, 350, 999])
    return latents, noise, t


@pytest.mark.parametrize("zsnr", [False, True])
def test_v_target_matches_diffusers_get_velocity(zsnr):
    param = Parameterisation("v_prediction", zsnr, "trailing")
    sched = training_scheduler(SDXL, param)
    reference = DDPMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=zsnr,
    )
    latents, noise, t = _batch()
    got = prediction_target(sched, latents, noise, t, "v_prediction")
    torch.testing.assert_close(got, reference.get_velocity(latents, noise, t))
    # v = sqrt(a) * eps - sqrt(1 - a) * x0, written out
    a = reference.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(got, a.sqrt() * noise - (1 - a).sqrt() * latents)


def test_epsilon_and_sample_targets():
    sched = training_scheduler(SDXL, Parameterisation("epsilon", False, "leading"))
    latents, noise, t = _batch()
    assert prediction_target(sched, latents, noise, t, "epsilon") is noise
    assert prediction_target(sched, latents, noise, t, "sample") is latents


def test_zero_terminal_snr_makes_last_timestep_pure_noise():
    sched = training_scheduler(SDXL, Parameterisation("v_prediction", True, "trailing"))
    latents, noise, _ = _batch()
    t = torch.full((4,), 999)
    torch.testing.assert_close(sched.add_noise(latents, noise, t), noise)
    assert snr(sched, t).max().item() == 0.0


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("zsnr", [False, True])
def test_min_snr_weights_finite_everywhere(prediction_type, zsnr):
    sched = training_scheduler(SDXL, Parameterisation(prediction_type, zsnr, "trailing"))
    t = torch.arange(1000)
    w = min_snr_weights(sched, t, 5.0, prediction_type)
    assert torch.isfinite(w).all()
    assert (w >= 0).all()


def test_min_snr_epsilon_formula():
    sched = training_scheduler(SDXL, Parameterisation("epsilon", False, "leading"))
    t = torch.arange(1000)
    s = snr(sched, t)
    expected = torch.minimum(s, torch.full_like(s, 5.0)) / s
    torch.testing.assert_close(min_snr_weights(sched, t, 5.0, "epsilon"), expected.float())


def test_v_weight_formula():
    sched = training_scheduler(SDXL, Parameterisation("v_prediction", False, "leading"))
    t = torch.arange(1000)
    s = snr(sched, t)
    expected = torch.minimum(s, torch.full_like(s, 5.0)) / (s + 1)
    torch.testing.assert_close(min_snr_weights(sched, t, 5.0, "v_prediction"), expected.float())


def test_noise_offset_shifts_channel_means_and_is_seeded():
    latents = torch.zeros(64, 4, 8, 8)
    plain = sample_noise(latents, torch.Generator().manual_seed(1), 0.0)
    offset = sample_noise(latents, torch.Generator().manual_seed(1), 0.5)
    again = sample_noise(latents, torch.Generator().manual_seed(1), 0.5)
    torch.testing.assert_close(offset, again)
    per_channel = offset.mean(dim=(2, 3)).std().item()
    assert per_channel > 3 * plain.mean(dim=(2, 3)).std().item()


def test_inference_config_carries_parameterisation():
    param = Parameterisation("v_prediction", True, "trailing")
    config = inference_scheduler_config(SDXL, param)
    assert config["prediction_type"] == "v_prediction"
    assert config["rescale_betas_zero_snr"] is True
    assert config["timestep_spacing"] == "trailing"
    assert config["beta_schedule"] == "scaled_linear"
