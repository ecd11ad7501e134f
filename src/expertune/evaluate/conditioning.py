"""One UNet call on cached SDXL conditioning, with classifier-free guidance when asked.

Cached samples carry `prompt_embeds`, `pooled_prompt_embeds` and `time_ids`; the
unconditional half is all zeros, as SDXL pipelines make it for an empty negative prompt
(`force_zeros_for_empty_prompt`), so no text encoder runs during evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Conditioning:
    """A batch's SDXL conditioning, on the UNet's device."""

    prompt_embeds: torch.Tensor  # (B, 77, D)
    pooled: torch.Tensor  # (B, D2)
    time_ids: torch.Tensor  # (B, 6)

    @classmethod
    def from_batch(cls, batch: dict, device: torch.device, dtype: torch.dtype) -> Conditioning:
        return cls(
            batch["prompt_embeds"].to(device, dtype),
            batch["pooled_prompt_embeds"].to(device, dtype),
            batch["time_ids"].to(device, dtype),
        )

    def with_unconditional(self) -> Conditioning:
        """[zeros, self] stacked on the batch axis (diffusers' CFG order)."""
        return Conditioning(
            torch.cat([torch.zeros_like(self.prompt_embeds), self.prompt_embeds]),
            torch.cat([torch.zeros_like(self.pooled), self.pooled]),
            torch.cat([self.time_ids, self.time_ids]),
        )


def predict(unet, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """The UNet's output for noisy latents `x` at timesteps `t` (one per sample)."""
    return unet(
        x,
        t,
        encoder_hidden_states=cond.prompt_embeds,
        added_cond_kwargs={"text_embeds": cond.pooled, "time_ids": cond.time_ids},
    ).sample


def guided_predict(
    unet, x: torch.Tensor, t: int, cond: Conditioning, guidance: float, rescale: float
) -> torch.Tensor:
    """Classifier-free guidance [Ho & Salimans 2022] with guidance rescale [Lin et al. 2023]."""
    t_batch = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
    if guidance <= 1.0:
        return predict(unet, x, t_batch, cond)
    from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import (
        rescale_noise_cfg,
    )

    both = predict(
        unet, torch.cat([x, x]), torch.cat([t_batch, t_batch]), cond.with_unconditional()
    )
    uncond, text = both.chunk(2)
    guided = uncond + guidance * (text - uncond)
    if rescale > 0:
        guided = rescale_noise_cfg(guided, text, guidance_rescale=rescale)
    return guided
