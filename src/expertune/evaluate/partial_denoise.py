"""Deterministic DDIM [Song et al. 2021] through one band of timesteps, on the training schedule.

Dataset validation needs exact control that pipelines do not give: start *at* the expert's
upper band edge (an img2img `strength` lands on whatever timestep the inference spacing
has there), stop *at* its lower edge, and return the expert's estimate of the clean
latents there. The maths uses the training scheduler's `alphas_cumprod`, so zero-terminal
SNR and the prediction type are exactly those the expert was trained with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from expertune.schedule.bands import Band


def band_timesteps(band: Band, steps: int) -> list[int]:
    """`steps` timesteps from band.hi down to band.lo, both included (one if the band is one)."""
    if band.size == 1 or steps <= 1:
        return [band.hi]
    values = torch.linspace(band.hi, band.lo, min(steps, band.size)).round().long()
    return list(dict.fromkeys(values.tolist()))


def band_steps(band: Band, full_steps: int, num_train_timesteps: int) -> int:
    """The steps a full `full_steps` schedule spends inside `band` (at least 2)."""
    return max(2, round(full_steps * band.size / num_train_timesteps))


@dataclass(frozen=True)
class Estimate:
    """The model's view of a noisy sample at timestep `t`: clean latents and noise."""

    x0: torch.Tensor
    eps: torch.Tensor
    t: int


def split_prediction(
    output: torch.Tensor, x: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x0, eps) from a model output under `prediction_type` at cumulative alpha `alpha_bar`."""
    a, s = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "v_prediction":
        return a * x - s * output, a * output + s * x
    if prediction_type == "epsilon":
        return (x - s * output) / a.clamp(min=1e-8), output
    if prediction_type == "sample":
        return output, (x - a * output) / s.clamp(min=1e-8)
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def renoise(estimate: Estimate, alpha_bar: torch.Tensor) -> torch.Tensor:
    """The DDIM (eta = 0) sample at the next timestep: sqrt(a) x0 + sqrt(1 - a) eps."""
    return alpha_bar.sqrt() * estimate.x0 + (1 - alpha_bar).sqrt() * estimate.eps


def denoise_band(
    model: Callable[[torch.Tensor, int], torch.Tensor],
    x: torch.Tensor,
    timesteps: list[int],
    alphas_cumprod: torch.Tensor,
    prediction_type: str,
) -> Estimate:
    """Run `model(x, t)` at each timestep, stepping with DDIM; the estimate at the last one.

    `x` must be noisy latents at `timesteps[0]`; the returned estimate is taken at
    `timesteps[-1]`, so a band ending at 0 returns the finished sample as `x0`.
    """
    if not timesteps:
        raise ValueError("denoise_band needs at least one timestep")
    alphas = alphas_cumprod.to(x.device, torch.float32)
    estimate = None
    for t in timesteps:
        if estimate is not None:
            x = renoise(estimate, alphas[t]).to(x.dtype)
        out = model(x, t).float()
        estimate = Estimate(*split_prediction(out, x.float(), alphas[t], prediction_type), t)
    return estimate
