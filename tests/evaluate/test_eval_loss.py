"""Stable eval loss: per-timestep values that are real, reproducible and RNG-independent."""

from __future__ import annotations

import itertools

import pytest
import torch
from eval_support import direct_loss

from expertune.evaluate.eval_loss import batches, eval_loss, eval_timesteps
from expertune.schedule.bands import Band, expert_band


@pytest.mark.parametrize("band", [Band(0, 349), Band(350, 999), Band(0, 999), Band(5, 7)])
def test_eval_timesteps_are_evenly_spaced_over_the_band(band):
    ts = eval_timesteps(band, 10)
    assert ts[0] == band.lo and ts[-1] == band.hi and ts == sorted(set(ts))
    assert len(ts) == min(10, band.size)
    gaps = [b - a for a, b in itertools.pairwise(ts)]
    assert max(gaps) - min(gaps) <= 1


def test_each_value_is_the_loss_at_that_timestep(tiny_parts, fake_sample):
    unet, _, scheduler = tiny_parts
    data = [fake_sample(i) for i in range(3)]
    band = expert_band(True, 0.35, True)
    ts = eval_timesteps(band, 4)
    result = eval_loss(unet, scheduler, data, ts, "v_prediction", batch_size=2)
    with torch.no_grad():
        for t, value in zip(ts, result.losses, strict=True):
            expected = (
                sum(
                    direct_loss(unet, scheduler, s, i, t, "v_prediction")
                    for i, s in enumerate(data)
                )
                / 3
            )
            assert value == pytest.approx(expected, rel=1e-5)
    assert len(set(result.losses)) == len(ts)  # a curve, not one value repeated
    assert result.mean == pytest.approx(sum(result.losses) / len(ts))


def test_identical_across_runs_and_unaffected_by_global_rng(tiny_parts, fake_sample):
    unet, _, scheduler = tiny_parts
    data = [fake_sample(i) for i in range(3)]
    ts = eval_timesteps(Band(0, 999), 5)
    torch.manual_seed(1)
    first = eval_loss(unet, scheduler, data, ts, "v_prediction")
    torch.manual_seed(2)
    torch.randn(100)
    second = eval_loss(unet, scheduler, data, ts, "v_prediction", batch_size=1)
    assert first.losses == pytest.approx(second.losses, rel=1e-6)


def test_samples_of_different_sizes_are_batched_apart(tiny_parts, fake_sample):
    unet, _, scheduler = tiny_parts
    data = [fake_sample(0, 8), fake_sample(1, 16), fake_sample(2, 16), fake_sample(3, 8)]
    together = eval_loss(unet, scheduler, data, [100, 600], "v_prediction", batch_size=4)
    alone = eval_loss(unet, scheduler, data, [100, 600], "v_prediction", batch_size=1)
    assert together.losses == pytest.approx(alone.losses, rel=1e-5)


def test_batches_group_each_bucket_across_the_whole_set(fake_sample):
    data = [fake_sample(i, size) for i, size in enumerate([8, 16, 8, 16, 16, 8, 16])]
    grouped = [(ix, b["latents"].shape[0]) for ix, b in batches(data, 2)]
    assert grouped == [([0, 2], 2), ([1, 3], 2), ([4, 6], 2), ([5], 1)]
    assert sorted(i for ix, _ in grouped for i in ix) == list(range(7))
