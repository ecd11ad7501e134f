"""The one denoising loss, used by training and by the stable eval loss.

Noise the latents at t, regress the prediction-type target, weight per sample
(min-SNR-gamma [Hang et al. 2023] when asked), average. Eval loss calls the same object
unweighted and as plain MSE (l2), so eval numbers compare across runs whatever the
training loss type.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from expertune.schedule.targets import (
    huber_c_for,
    min_snr_weights,
    prediction_target,
    pseudo_huber_per_sample,
)


@dataclass(frozen=True)
class DenoisingLoss:
    """MSE between the denoiser's output and its target at timesteps t."""

    scheduler: object  # the training DDPMScheduler: add_noise, velocity, alphas_cumprod
    prediction_type: str  # epsilon | v_prediction | sample
    snr_gamma: float | None = None  # min-SNR-gamma weighting; None = unweighted
    loss_type: str = "l2"  # l2 | huber | smooth_l1 (SimpleTuner's pseudo-Huber forms)
    huber_c: float = 0.1  # the pseudo-Huber constant ...
    huber_schedule: str = "snr"  # ... and how it varies over t: constant | exponential | snr

    def noisy(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The denoiser's input: latents noised to t."""
        return self.scheduler.add_noise(latents, noise, t)

    def per_sample(
        self,
        pred: torch.Tensor,
        latents: torch.Tensor,
        noise: torch.Tensor,
        t: torch.Tensor,
        weighted: bool = True,
    ) -> torch.Tensor:
        """Loss of each sample (shape [B]), weighted unless `weighted` is False."""
        target = prediction_target(self.scheduler, latents, noise, t, self.prediction_type)
        if self.loss_type == "l2":
            loss = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
        else:
            c = huber_c_for(self.scheduler, t, self.huber_c, self.huber_schedule)
            loss = pseudo_huber_per_sample(pred, target, c, self.loss_type)
        if weighted and self.snr_gamma:
            weights = min_snr_weights(self.scheduler, t, self.snr_gamma, self.prediction_type)
            loss = loss * weights.to(loss.device)
        return loss

    def __call__(self, pred, latents, noise, t) -> torch.Tensor:
        """The batch's training loss: the weighted per-sample losses, averaged."""
        return self.per_sample(pred, latents, noise, t).mean()
