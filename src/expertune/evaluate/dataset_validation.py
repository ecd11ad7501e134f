"""Dataset validation: real images noised to this expert's upper band edge, then denoised.

For each of N eval samples (fixed choice, fixed noise), the cached latents are noised to
`band.hi` with the training scheduler's `add_noise` (not to a fixed strength: the
expert sees exactly the noise level where its band begins) and denoised with the expert
down to `band.lo`. The panel shows original | noised | refined, where "original" is the
VAE's decode of the cached latents, so PSNR measures the denoiser and not the VAE. For a
refiner (band ending at 0) "refined" is its finished sample; for stage one it is its
estimate of the clean image at its lower edge, and with a refiner the chain's result
is added as a fourth panel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from expertune.evaluate.conditioning import Conditioning, guided_predict
from expertune.evaluate.images import decode, psnr, side_by_side
from expertune.evaluate.partial_denoise import (
    band_steps,
    band_timesteps,
    denoise_band,
    renoise,
)
from expertune.schedule.bands import Band


@dataclass(frozen=True)
class DatasetSettings:
    count: int  # samples to validate
    steps: int  # inference steps of a full schedule; the band gets its share
    guidance: float
    guidance_rescale: float
    seed: int  # noise of sample i comes from seed + i
    prediction_type: str


@dataclass(frozen=True)
class DatasetResult:
    panel: object  # PIL image: original | noised | refined [| chain]
    refined: object  # PIL image the expert produced (scored with CLIP)
    caption: str
    name: str
    timesteps: tuple[int, ...]  # the expert's denoising timesteps; [0] is band.hi
    psnr: float
    chain_psnr: float | None = None


def noised_latents(scheduler, latents: torch.Tensor, band: Band, seed: int) -> torch.Tensor:
    """`latents` noised to band.hi with the fixed noise of `seed` (batch of one)."""
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    t = torch.tensor([band.hi], device=latents.device)
    return scheduler.add_noise(latents, noise.to(latents.device, latents.dtype), t)


@dataclass
class DatasetValidator:
    """The expert (and optionally the refiner after it) applied to noised dataset latents."""

    unet: torch.nn.Module  # the live expert, in eval mode
    vae: torch.nn.Module
    scheduler: object  # the training (DDPM) scheduler: add_noise and alphas_cumprod
    band: Band  # this expert's band
    num_train_timesteps: int
    settings: DatasetSettings
    refiner_unet: torch.nn.Module | None = None  # stage two, for stage one's chain panel

    def run(self, eval_set) -> list[DatasetResult]:
        """Validate the first `settings.count` samples of `eval_set`."""
        results = []
        for i in range(min(self.settings.count, len(eval_set))):
            images, labels, timesteps = self.sample(eval_set.dataset[i], i)
            results.append(
                DatasetResult(
                    panel=side_by_side(images, labels),
                    refined=images[2],
                    caption=eval_set.captions[i],
                    name=eval_set.names[i],
                    timesteps=timesteps,
                    psnr=psnr(images[0], images[2]),
                    chain_psnr=psnr(images[0], images[3]) if len(images) > 3 else None,
                )
            )
        return results

    def sample(self, sample: dict, index: int) -> tuple[list, list[str], tuple[int, ...]]:
        """(images, labels, expert timesteps) for one sample: original, noised, refined[, chain]."""
        param = next(self.unet.parameters())
        latents = sample["latents"][None].to(param.device, torch.float32)
        cond = Conditioning.from_batch(
            {k: v[None] for k, v in sample.items()}, param.device, param.dtype
        )
        band = self.band
        x = noised_latents(self.scheduler, latents, band, self.settings.seed + index)
        timesteps = self._timesteps(band)
        estimate = self._denoise(self.unet, cond, x, timesteps)
        out = [latents, x, estimate.x0]
        labels = ["original", f"t={band.hi}", f"{band.hi}..{band.lo}"]
        if self.refiner_unet is not None and band.lo > 0:
            low = Band(0, band.lo - 1)
            x_low = renoise(estimate, self.scheduler.alphas_cumprod[low.hi].float().to(x.device))
            out.append(self._denoise(self.refiner_unet, cond, x_low, self._timesteps(low)).x0)
            labels.append(f"+{low.hi}..0")
        return [decode(self.vae, z)[0] for z in out], labels, tuple(timesteps)

    def _timesteps(self, band: Band) -> list[int]:
        steps = band_steps(band, self.settings.steps, self.num_train_timesteps)
        return band_timesteps(band, steps)

    def _denoise(self, unet, cond: Conditioning, x: torch.Tensor, timesteps: list[int]):
        s = self.settings
        dtype = next(unet.parameters()).dtype

        def model(z: torch.Tensor, t: int) -> torch.Tensor:
            return guided_predict(unet, z.to(dtype), t, cond, s.guidance, s.guidance_rescale)

        alphas = self.scheduler.alphas_cumprod
        return denoise_band(model, x, timesteps, alphas, s.prediction_type)
