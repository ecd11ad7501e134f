"""Timesteps are drawn only inside the expert's band, at every batch size (including 1)."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from expertune.schedule.bands import expert_band
from expertune.schedule.sampling import sample_timesteps


@settings(max_examples=200, deadline=None)
@given(
    strength=st.floats(min_value=0.002, max_value=0.998),
    batch_size=st.integers(min_value=1, max_value=16),
    invert=st.booleans(),
    seed=st.integers(min_value=0, max_value=2**31),
)
def test_samples_stay_in_band(strength, batch_size, invert, seed):
    band = expert_band(True, strength, invert, 1000)
    g = torch.Generator().manual_seed(seed)
    for _ in range(5):
        t = sample_timesteps(band, batch_size, g)
        assert t.shape == (batch_size,)
        assert int(t.min()) >= band.lo
        assert int(t.max()) <= band.hi
    boundary = round(strength * 1000)
    if invert:
        assert (band.lo, band.hi) == (boundary, 999)
    else:
        assert (band.lo, band.hi) == (0, boundary - 1)


def test_seed_band_edges_are_reached_at_batch_size_one():
    band = expert_band(True, 0.35, True, 1000)
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([sample_timesteps(band, 1, g) for _ in range(20000)])
    assert int(seen.min()) == 350
    assert int(seen.max()) == 999


def test_full_range_without_refiner_training():
    band = expert_band(False, 0.35, False, 1000)
    assert (band.lo, band.hi) == (0, 999)
