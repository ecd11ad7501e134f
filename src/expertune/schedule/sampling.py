"""Training timesteps drawn only inside an expert's band, at every batch size."""

from __future__ import annotations

import torch

from expertune.schedule.bands import Band


def sample_timesteps(band: Band, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform integer timesteps in `[band.lo, band.hi]` (inclusive), on the generator's device.

    Sampling happens on the host generator so the batch's min/max are known without a
    device sync (they go to metrics.jsonl).
    """
    return torch.randint(
        band.lo,
        band.hi + 1,
        (batch_size,),
        generator=generator,
        device=generator.device,
        dtype=torch.long,
    )
