"""The band plan: which expert owns which training timesteps (pure Python, no torch).

A plan partitions ``[0, T)`` into K contiguous bands at integer *edges*
``0 = e_0 < e_1 < ... < e_K = T``; band ``i`` is ``[e_i, e_{i+1} - 1]``. Bands are indexed
by ascending timestep, so band 0 is the low-noise end (SDXL's refiner, SSD-1B's stage two)
and band K-1 the high-noise end (the base, stage one), which runs first at inference.

Training samples timesteps inside its band, and inference hands over at the same edges:
diffusers keeps base timesteps ``t >= cutoff`` with
``cutoff = int(round(T - denoising_end * T))`` and gives the refiner the rest, so an edge
``e`` corresponds to ``denoising_end = denoising_start = 1 - e / T``.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

from expertune.errors import ConfigError


@dataclass(frozen=True)
class Band:
    """An inclusive range of integer training timesteps ``[lo, hi]``."""

    lo: int
    hi: int

    def __post_init__(self) -> None:
        if not 0 <= self.lo <= self.hi:
            raise ValueError(f"a band needs 0 <= lo <= hi, got [{self.lo}, {self.hi}]")

    def __contains__(self, t: object) -> bool:
        return isinstance(t, int) and self.lo <= t <= self.hi

    @property
    def size(self) -> int:
        """How many timesteps the band holds."""
        return self.hi - self.lo + 1

    def __str__(self) -> str:
        return f"[{self.lo}, {self.hi}]"


def diffusers_cutoff(denoising_end: float, num_train_timesteps: int) -> int:
    """The first base timestep diffusers keeps for ``denoising_end`` (SDXL pipelines).

    diffusers writes ``int(round(T - denoising_end * T))``; Python's round already
    returns an int.
    """
    return round(num_train_timesteps - denoising_end * num_train_timesteps)


def strength_boundary(strength: float, num_train_timesteps: int = 1000) -> int:
    """The edge between refiner and base for a refiner strength ``s``.

    Equals ``round(s * T)``, computed the way diffusers does for the seed's inference
    chain (``denoising_end = 1 - s``), so training and inference can never disagree,
    and float noise such as ``0.29 * 1000 = 289.99999999999994`` does not lose a step.
    """
    return diffusers_cutoff(1.0 - strength, num_train_timesteps)


@dataclass(frozen=True)
class BandPlan:
    """A partition of ``[0, T)`` into contiguous expert bands (see module docstring)."""

    edges: tuple[int, ...]

    def __post_init__(self) -> None:
        edges = tuple(self.edges)
        object.__setattr__(self, "edges", edges)
        if len(edges) < 2 or edges[0] != 0:
            raise ConfigError(f"band edges must run from 0 to T, got {list(edges)}")
        if any(b <= a for a, b in itertools.pairwise(edges)):
            raise ConfigError(
                f"band edges must strictly increase (every band non-empty), got {list(edges)}"
            )

    @classmethod
    def single(cls, num_train_timesteps: int = 1000) -> BandPlan:
        """One expert owning every timestep (ordinary, non-MoE training)."""
        return cls((0, num_train_timesteps))

    @classmethod
    def from_strength(cls, strength: float, num_train_timesteps: int = 1000) -> BandPlan:
        """Two experts: refiner ``[0, b-1]`` and base ``[b, T-1]`` with ``b = round(s*T)``."""
        T = num_train_timesteps
        if not 0.0 < strength < 1.0:
            raise ConfigError(
                f"--refiner_training_strength={strength} must lie strictly between 0 and 1"
            )
        b = strength_boundary(strength, T)
        if not 0 < b < T:
            raise ConfigError(
                f"--refiner_training_strength={strength} leaves one expert no timesteps "
                f"(boundary round({strength}*{T}) = {b}); use a strength in "
                f"[{1 / T:g}, {1 - 1 / T:g}]"
            )
        return cls((0, b, T))

    @classmethod
    def from_edges(cls, edges: Sequence[int], num_train_timesteps: int = 1000) -> BandPlan:
        """K experts from explicit edges; the outer edges 0 and T may be left out."""
        inner = [int(e) for e in edges if e not in (0, num_train_timesteps)]
        if any(not 0 < e < num_train_timesteps for e in inner):
            raise ConfigError(
                f"band edges must lie inside (0, {num_train_timesteps}), got {list(edges)}"
            )
        return cls((0, *inner, num_train_timesteps))

    @classmethod
    def from_snr(cls, alphas_cumprod: Sequence[float], snr_edges: Sequence[float]) -> BandPlan:
        """K experts split where the signal-to-noise ratio crosses each of ``snr_edges``.

        SNR(t) = a(t) / (1 - a(t)) falls with t; the edge for a value ``s`` is the first
        timestep whose SNR is below ``s`` (eDiff-I splits its experts by noise level).
        """
        T = len(alphas_cumprod)
        snr = [a / (1.0 - a) if a < 1.0 else math.inf for a in alphas_cumprod]
        edges = [next((t for t, v in enumerate(snr) if v < s), T) for s in snr_edges]
        if len(set(edges)) != len(edges) or any(not 0 < e < T for e in edges):
            raise ConfigError(
                f"SNR edges {list(snr_edges)} give timestep edges {edges}: every band "
                f"needs at least one timestep; pick SNR values further apart"
            )
        return cls.from_edges(sorted(edges), T)

    @property
    def num_train_timesteps(self) -> int:
        return self.edges[-1]

    @property
    def bands(self) -> tuple[Band, ...]:
        """The bands by ascending timestep (band 0 is the lowest-noise expert)."""
        return tuple(Band(a, b - 1) for a, b in itertools.pairwise(self.edges))

    def __len__(self) -> int:
        return len(self.edges) - 1

    def band_of(self, t: int) -> int:
        """Index of the band that owns timestep ``t``."""
        if not 0 <= t < self.num_train_timesteps:
            raise ValueError(f"timestep {t} is outside [0, {self.num_train_timesteps})")
        return bisect.bisect_right(self.edges, t) - 1

    def handover_fractions(self) -> tuple[float, ...]:
        """diffusers ``denoising_end``/``denoising_start`` at each internal edge.

        In denoising order (highest edge first, the order the chain hands over), so the
        values ascend: for 2 experts with strength 0.35 this is ``(0.65,)``.
        """
        T = self.num_train_timesteps
        return tuple(1.0 - e / T for e in reversed(self.edges[1:-1]))


def expert_band(
    refiner_training: bool,
    strength: float,
    invert: bool,
    num_train_timesteps: int = 1000,
) -> Band:
    """The band one SimpleTuner-style job trains.

    Without ``--refiner_training`` the expert owns everything; with it the job trains the
    refiner band ``[0, b-1]``, or the base band ``[b, T-1]`` when the schedule is inverted.
    """
    if not refiner_training:
        return BandPlan.single(num_train_timesteps).bands[0]
    low, high = BandPlan.from_strength(strength, num_train_timesteps).bands
    return high if invert else low
