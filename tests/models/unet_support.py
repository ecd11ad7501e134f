"""One fixed input for the tiny SDXL UNet, so LoRA tests compare outputs on the same call."""

from __future__ import annotations

import torch


def unet_inputs() -> dict:
    """Two samples at t=900 and t=100 with seeded latents and tiny-model conditioning."""
    g = torch.Generator().manual_seed(0)
    return {
        "sample": torch.randn(2, 4, 8, 8, generator=g),
        "timestep": torch.tensor([900, 100]),
        "encoder_hidden_states": torch.randn(2, 77, 64, generator=g),
        "added_cond_kwargs": {
            "text_embeds": torch.randn(2, 32, generator=g),
            "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 2),
        },
    }


@torch.no_grad()
def unet_output(unet) -> torch.Tensor:
    """The UNet's prediction for `unet_inputs()`."""
    return unet(**unet_inputs()).sample
