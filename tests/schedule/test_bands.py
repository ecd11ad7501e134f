"""The band plan partitions [0, T) exactly and hands over where diffusers does."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from expertune.errors import ConfigError
from expertune.schedule.bands import (
    Band,
    BandPlan,
    diffusers_cutoff,
    expert_band,
    strength_boundary,
)

Ts = st.integers(min_value=2, max_value=2000)


@st.composite
def plans(draw) -> BandPlan:
    """K-expert plans: any set of distinct internal edges of any T."""
    T = draw(Ts)
    inner = draw(st.sets(st.integers(1, T - 1), max_size=min(T - 1, 12)))
    return BandPlan.from_edges(sorted(inner), T)


@st.composite
def strengths(draw) -> tuple[float, int]:
    """A strength that leaves both experts at least one timestep, with its T."""
    T = draw(Ts)
    s = draw(st.floats(min_value=0.0, max_value=1.0, exclude_min=True, exclude_max=True))
    b = strength_boundary(s, T)
    if not 0 < b < T:
        s = draw(st.integers(1, T - 1)) / T
    return s, T


def test_seed_strength():
    plan = BandPlan.from_strength(0.35)
    assert plan.edges == (0, 350, 1000)
    assert plan.bands == (Band(0, 349), Band(350, 999))
    assert plan.handover_fractions() == (0.65,)
    assert expert_band(True, 0.35, invert=True) == Band(350, 999)
    assert expert_band(True, 0.35, invert=False) == Band(0, 349)
    assert expert_band(False, 0.35, invert=False) == Band(0, 999)


def test_band_basics():
    band = Band(350, 999)
    assert 350 in band and 999 in band and 349 not in band and 1000 not in band
    assert band.size == 650 and str(band) == "[350, 999]"
    with pytest.raises(ValueError):
        Band(5, 4)


@pytest.mark.parametrize("s", [0.0, 1.0, -0.1, 1.5, 0.0004, 0.9996])
def test_strength_leaving_a_band_empty_is_an_error(s):
    with pytest.raises(ConfigError, match="refiner_training_strength"):
        BandPlan.from_strength(s, 1000)


@pytest.mark.parametrize(
    "edges", [(0, 500, 500, 1000), (0, 600, 400, 1000), (0, 1000, 1200), (-5, 0, 1000)]
)
def test_bad_edges_are_an_error(edges):
    with pytest.raises(ConfigError):
        BandPlan.from_edges(edges, 1000)


def test_band_of_outside_the_range():
    with pytest.raises(ValueError):
        BandPlan.single(1000).band_of(1000)


@given(plans())
def test_bands_partition_timesteps_exactly(plan):
    T = plan.num_train_timesteps
    covered = [t for band in plan.bands for t in range(band.lo, band.hi + 1)]
    assert covered == list(range(T))
    assert sum(band.size for band in plan.bands) == T
    assert len(plan) == len(plan.bands) == len(plan.edges) - 1


@given(plans(), st.data())
def test_band_of_agrees_with_the_bands(plan, data):
    t = data.draw(st.integers(0, plan.num_train_timesteps - 1))
    owners = [i for i, band in enumerate(plan.bands) if t in band]
    assert owners == [plan.band_of(t)]


@given(plans())
def test_handover_matches_diffusers_cutoff(plan):
    T = plan.num_train_timesteps
    fractions = plan.handover_fractions()
    assert list(fractions) == sorted(fractions)
    assert all(0.0 < f < 1.0 for f in fractions)
    cutoffs = [diffusers_cutoff(f, T) for f in fractions]
    assert cutoffs == list(reversed(plan.edges[1:-1]))


@given(strengths(), st.booleans())
def test_strength_boundary_is_round_s_times_T(case, invert):
    s, T = case
    b = strength_boundary(s, T)
    if abs(s * T - math.floor(s * T) - 0.5) > 1e-6:  # no half-way ties
        assert b == round(s * T)
    plan = BandPlan.from_strength(s, T)
    assert plan.edges == (0, b, T)
    band = expert_band(True, s, invert, T)
    assert band == (Band(b, T - 1) if invert else Band(0, b - 1))
    # The seed's inference chain: base with denoising_end = 1 - s keeps t >= b.
    assert diffusers_cutoff(1 - s, T) == b
    assert diffusers_cutoff(plan.handover_fractions()[0], T) == b


@given(st.integers(1, 999))
def test_whole_strengths_land_on_their_step(k):
    assert strength_boundary(k / 1000, 1000) == k


def test_from_snr_splits_by_noise_level():
    T = 1000
    betas = [(0.00085**0.5 + i / (T - 1) * (0.012**0.5 - 0.00085**0.5)) ** 2 for i in range(T)]
    alphas, prod = [], 1.0
    for beta in betas:
        prod *= 1 - beta
        alphas.append(prod)
    snr = [a / (1 - a) for a in alphas]
    plan = BandPlan.from_snr(alphas, [1.0, 0.1])
    assert len(plan) == 3
    low, mid, high = plan.bands
    assert all(snr[t] >= 1.0 for t in range(low.lo, low.hi + 1))
    assert all(0.1 <= snr[t] < 1.0 for t in range(mid.lo, mid.hi + 1))
    assert all(snr[t] < 0.1 for t in range(high.lo, high.hi + 1))
    with pytest.raises(ConfigError, match="SNR"):
        BandPlan.from_snr(alphas, [1e9])
