"""Regression targets, loss weights and noise for one training batch.

Targets follow the prediction type (epsilon, v [Salimans & Ho 2022], sample);
weights follow min-SNR-gamma [Hang et al. 2023], kept finite at zero-terminal SNR
[Lin et al. 2023] where the last timestep has SNR exactly 0.
"""

from __future__ import annotations

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
