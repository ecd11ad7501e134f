"""Stable eval loss: the denoising loss at fixed timesteps with fixed noise per sample.

Each sample's noise comes from its own generator seeded with `EVAL_SEED + index`, the
same at every timestep, every evaluation and for every model, so the only thing that
changes between two evaluations is the model; the timestep is passed to the UNet as
given (a peer drops it and evaluates at the batch's random training timestep, which
turns its per-timestep curve into noise). The loss is the plain MSE against the
prediction target, unweighted, averaged over samples. Samples of several aspect buckets
(latents of different sizes) are batched per bucket; the per-timestep value is still the
mean over every sample, whatever the batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from expertune.evaluate.conditioning import Conditioning, predict
from expertune.schedule.bands import Band
from expertune.schedule.loss import DenoisingLoss

EVAL_SEED = 0  # fixed on purpose: eval numbers compare across runs, seeds and experts


def eval_timesteps(band: Band, count: int) -> list[int]:
    """`count` integer timesteps evenly spaced over the band, both edges included."""
    if count <= 1 or band.size == 1:
        return [(band.lo + band.hi) // 2]
    values = torch.linspace(band.lo, band.hi, min(count, band.size)).round().long()
    return list(dict.fromkeys(values.tolist()))


def sample_noise(latents: torch.Tensor, index: int) -> torch.Tensor:
    """The fixed noise of eval sample `index` (drawn on the CPU, so every device agrees)."""
    generator = torch.Generator().manual_seed(EVAL_SEED + index)
    return torch.randn(latents.shape, generator=generator, dtype=torch.float32)


@dataclass(frozen=True)
class EvalLoss:
    """Mean loss per timestep; `mean` is their plain average."""

    timesteps: tuple[int, ...]
    losses: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.losses) / len(self.losses)

    def as_dict(self) -> dict:
        return {"timesteps": list(self.timesteps), "losses": list(self.losses), "mean": self.mean}


def eval_loss(
    unet,  # the denoiser, in eval mode; called without autograd
    scheduler,  # the training (DDPM) scheduler: add_noise and the target
    samples: Sequence,  # samples[i] -> cached tensors (an EvalSet's dataset)
    timesteps: Sequence[int],  # where to measure
    prediction_type: str,  # what `unet` predicts
    batch_size: int = 8,  # samples per UNet call
) -> EvalLoss:
    """The unweighted denoising MSE at each timestep, averaged over `samples`."""
    param = next(unet.parameters())
    loss = DenoisingLoss(scheduler, prediction_type)  # the training loss, unweighted
    totals = torch.zeros(len(timesteps), dtype=torch.float64)
    with torch.no_grad():
        for indices, batch in batches(samples, batch_size):
            latents = batch["latents"].to(param.device, torch.float32)
            noise = torch.stack([sample_noise(latents[0], i) for i in indices]).to(param.device)
            cond = Conditioning.from_batch(batch, param.device, param.dtype)
            for k, t in enumerate(timesteps):
                t_batch = torch.full((len(indices),), int(t), device=param.device)
                noisy = loss.noisy(latents, noise, t_batch)
                pred = predict(unet, noisy.to(param.dtype), t_batch, cond).float()
                per_sample = loss.per_sample(pred, latents, noise, t_batch, weighted=False)
                totals[k] += per_sample.double().sum().cpu()
    losses = (totals / len(samples)).tolist()
    return EvalLoss(tuple(int(t) for t in timesteps), tuple(losses))


def batches(samples: Sequence, batch_size: int):
    """(indices, stacked tensors) of up to `batch_size` samples whose latents share one shape.

    Samples of different aspect buckets have latents of different sizes and cannot share
    a UNet call, so each shape fills its own batch: a batch is yielded as soon as it is
    full, and the partial ones at the end, earliest started first. The grouping depends
    only on the samples' order and shapes (deterministic), every sample is in exactly one
    batch, and at most one batch per bucket is held in memory.
    """
    pending: dict[tuple[int, ...], tuple[list[int], list[dict]]] = {}
    for i in range(len(samples)):
        item = samples[i]
        shape = tuple(item["latents"].shape)
        indices, items = pending.setdefault(shape, ([], []))
        indices.append(i)
        items.append(item)
        if len(items) >= batch_size:
            yield indices, _stack(items)
            del pending[shape]
    for indices, items in pending.values():
        yield indices, _stack(items)


def _stack(items: list[dict]) -> dict[str, torch.Tensor]:
    return {key: torch.stack([item[key] for item in items]) for key in items[0]}
