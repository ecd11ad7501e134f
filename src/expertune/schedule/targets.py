"""Regression targets, loss weights and noise for one training batch.

Targets follow the prediction type (epsilon, v [Salimans & Ho 2022], sample);
weights follow min-SNR-gamma [Hang et al. 2023], kept finite at zero-terminal SNR
[Lin et al. 2023] where the last timestep has SNR exactly 0.
"""

from __future__ import annotations

import math

import torch
from diffusers import DDPMScheduler


def prediction_target(
    scheduler: DDPMScheduler,
    latents: torch.Tensor,
    noise: torch.Tensor,
    timesteps: torch.Tensor,
    prediction_type: str,
) -> torch.Tensor:
    """What the denoiser should output for `add_noise(latents, noise, timesteps)`."""
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    if prediction_type == "sample":
        return latents
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def snr(scheduler: DDPMScheduler, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_bar / (1 - alpha_bar) at each timestep (0 at a zero-SNR end)."""
    alphas_cumprod = scheduler.alphas_cumprod.to(device=timesteps.device)[timesteps]
    return alphas_cumprod / (1.0 - alphas_cumprod)


def min_snr_weights(
    scheduler: DDPMScheduler, timesteps: torch.Tensor, gamma: float, prediction_type: str
) -> torch.Tensor:
    """Per-sample min-SNR-gamma weights expressed for the chosen prediction type.

    epsilon: min(snr, g) / snr, written as 1 where snr <= g so snr = 0 stays finite;
    v_prediction: min(snr, g) / (snr + 1); sample: min(snr, g).
    """
    s = snr(scheduler, timesteps).float()
    clipped = torch.clamp(s, max=gamma)
    if prediction_type == "epsilon":
        return torch.where(s <= gamma, torch.ones_like(s), gamma / s.clamp(min=gamma))
    if prediction_type == "v_prediction":
        return clipped / (s + 1.0)
    if prediction_type == "sample":
        return clipped
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def sample_noise(
    latents: torch.Tensor, generator: torch.Generator, noise_offset: float = 0.0
) -> torch.Tensor:
    """Gaussian noise like `latents`, plus a per-channel offset [Guttenberg 2023] if asked."""
    noise = torch.randn(
        latents.shape, generator=generator, device=generator.device, dtype=latents.dtype
    )
    if noise_offset > 0:
        b, c = latents.shape[:2]
        offset = torch.randn(
            (b, c, 1, 1), generator=generator, device=generator.device, dtype=latents.dtype
        )
        noise = noise + noise_offset * offset
    return noise.to(latents.device)


def weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None
) -> torch.Tensor:
    """Mean squared error per sample, weighted per sample, averaged over the batch."""
    per_sample = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    if weights is not None:
        per_sample = per_sample * weights.to(per_sample.device)
    return per_sample.mean()


# --- loss types (issue 9): SimpleTuner's l2 / huber / smooth_l1 ---------------------------
def huber_c_for(
    scheduler: DDPMScheduler, timesteps: torch.Tensor, huber_c: float, schedule: str
) -> torch.Tensor:
    """The pseudo-Huber constant per sample, as SimpleTuner schedules it over timesteps.

    constant: `huber_c`; exponential: exp(-a t) with a = -ln(huber_c) / T (1 at t = 0,
    huber_c at t = T); snr: (1 - c) / (1 + sigma)^2 + c with sigma = sqrt((1 - abar) / abar),
    written as abar / (sqrt(abar) + sqrt(1 - abar))^2 so a zero-SNR last step stays finite.
    """
    t = timesteps.float()
    if schedule == "constant":
        return torch.full_like(t, huber_c)
    if schedule == "exponential":
        total = scheduler.config.num_train_timesteps
        return torch.exp(t * (math.log(huber_c) / total))
    if schedule == "snr":
        abar = scheduler.alphas_cumprod.to(device=timesteps.device)[timesteps].float()
        shrink = abar / (abar.sqrt() + (1.0 - abar).sqrt()).pow(2)
        return (1.0 - huber_c) * shrink + huber_c
    raise ValueError(f"unknown huber_schedule {schedule!r}")


def loss_for(loss_type: str, huber_c: torch.Tensor | None = None):
    """The per-batch loss `f(pred, target, weights)` of `loss_type`.

    l2 is weighted_mse; huber is 2c(sqrt(d^2 + c^2) - c) and smooth_l1 is
    2(sqrt(d^2 + c^2) - c) with `huber_c` (one value per sample), SimpleTuner's
    pseudo-Huber forms. Each is averaged per sample, weighted, then over the batch.
    """
    if loss_type == "l2":
        return weighted_mse
    if loss_type not in ("huber", "smooth_l1"):
        raise ValueError(f"unknown loss_type {loss_type!r}")
    if huber_c is None:
        raise ValueError(f"loss_type {loss_type} needs huber_c")

    def pseudo_huber(pred, target, weights):
        per_sample = pseudo_huber_per_sample(pred, target, huber_c, loss_type)
        if weights is not None:
            per_sample = per_sample * weights.to(per_sample.device)
        return per_sample.mean()

    return pseudo_huber


def pseudo_huber_per_sample(
    pred: torch.Tensor, target: torch.Tensor, huber_c: torch.Tensor, loss_type: str
) -> torch.Tensor:
    """SimpleTuner's pseudo-Huber per sample: smooth_l1 2(sqrt(d^2 + c^2) - c), huber c times it."""
    c = huber_c.float().to(pred.device).view(-1, *([1] * (pred.dim() - 1)))
    d2 = (pred.float() - target.float()).pow(2)
    per_element = 2 * (torch.sqrt(d2 + c * c) - c)
    if loss_type == "huber":
        per_element = c * per_element
    return per_element.flatten(1).mean(dim=1)
