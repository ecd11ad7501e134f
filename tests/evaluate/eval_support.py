"""Helpers shared by the evaluation tests: the eval loss written out by hand."""

from __future__ import annotations

import torch

from expertune.evaluate.eval_loss import EVAL_SEED
from expertune.schedule.targets import prediction_target


def direct_loss(unet, scheduler, sample: dict, index: int, t: int, kind: str) -> float:
    """One sample's loss at one timestep, with the eval set's fixed noise for that sample."""
    latents = sample["latents"][None]
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(EVAL_SEED + index))
    tt = torch.tensor([t])
    with torch.no_grad():
        pred = unet(
            scheduler.add_noise(latents, noise, tt),
            tt,
            encoder_hidden_states=sample["prompt_embeds"][None],
            added_cond_kwargs={
                "text_embeds": sample["pooled_prompt_embeds"][None],
                "time_ids": sample["time_ids"][None],
            },
        ).sample
    target = prediction_target(scheduler, latents, noise, tt, kind)
    return float((pred.float() - target.float()).pow(2).mean())
