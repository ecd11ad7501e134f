"""DDIM through a band: exact start and end timesteps, exact maths for every prediction type."""

from __future__ import annotations

import pytest
import torch

from expertune.evaluate.partial_denoise import (
    band_steps,
    band_timesteps,
    denoise_band,
    split_prediction,
)
from expertune.schedule.bands import Band, expert_band
from expertune.schedule.noise import Parameterisation, training_scheduler
from expertune.schedule.targets import prediction_target

SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "scaled_linear"}
SCHEDULE |= {"beta_start": 0.00085, "beta_end": 0.012}


@pytest.mark.parametrize("strength", [0.2, 0.35, 0.5, 0.8])
@pytest.mark.parametrize("invert", [False, True])
def test_band_timesteps_run_from_the_upper_edge_to_the_lower(strength, invert):
    band = expert_band(True, strength, invert)
    steps = band_timesteps(band, band_steps(band, 20, 1000))
    assert steps[0] == band.hi and steps[-1] == band.lo
    assert steps == sorted(steps, reverse=True) and len(set(steps)) == len(steps)
    assert all(t in band for t in steps)


def test_band_steps_are_the_bands_share_of_a_full_schedule():
    assert band_steps(Band(0, 349), 40, 1000) == 14
    assert band_steps(Band(350, 999), 40, 1000) == 26
    assert band_steps(Band(0, 9), 40, 1000) == 2  # never fewer than two


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_split_prediction_inverts_the_training_target(kind):
    scheduler = training_scheduler(SCHEDULE, Parameterisation(kind, False, "trailing"))
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
    t = torch.tensor([120, 700])
    x_t = scheduler.add_noise(x0, eps, t)
    target = prediction_target(scheduler, x0, eps, t, kind)
    alpha = scheduler.alphas_cumprod[t].view(-1, 1, 1, 1)
    got_x0, got_eps = split_prediction(target, x_t, alpha, kind)
    torch.testing.assert_close(got_x0, x0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_eps, eps, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("zero_snr", [False, True])
def test_an_oracle_denoiser_recovers_the_clean_latents(zero_snr):
    """A model that always predicts the true v-target walks DDIM back to x0 exactly."""
    scheduler = training_scheduler(SCHEDULE, Parameterisation("v_prediction", zero_snr, "trailing"))
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    band = Band(0, 349) if not zero_snr else Band(350, 999)
    seen = []

    def oracle(x, t):
        seen.append(t)
        return prediction_target(scheduler, x0, eps, torch.tensor([t]), "v_prediction")

    x_start = scheduler.add_noise(x0, eps, torch.tensor([band.hi]))
    steps = band_timesteps(band, 8)
    estimate = denoise_band(oracle, x_start, steps, scheduler.alphas_cumprod, "v_prediction")
    assert seen == steps and estimate.t == band.lo
    torch.testing.assert_close(estimate.x0, x0, rtol=1e-4, atol=1e-4)
