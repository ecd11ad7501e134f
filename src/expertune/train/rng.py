"""Every random number generator the training loop draws from, as data a checkpoint holds.

Tensors (torch generator states) go to safetensors; Python's and numpy's Mersenne-Twister
states are lists of integers and go to JSON. Each process has its own states, so a
checkpoint keeps one entry per process rank.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class RngState:
    """One process's generator states: `tensors` for torch, `plain` for Python and numpy."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    plain: dict = field(default_factory=dict)


def capture(generators: dict[str, torch.Generator]) -> RngState:
    """The states of the named generators plus the global torch, CUDA, Python, numpy ones."""
    tensors = {name: g.get_state() for name, g in generators.items()}
    tensors["torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = state
    version, mt, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(mt), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return RngState(tensors, plain)


def restore(state: RngState, generators: dict[str, torch.Generator]) -> None:
    """Put every state in `state` back (the inverse of `capture`)."""
    for name, g in generators.items():
        g.set_state(state.tensors[name])
    torch.set_rng_state(state.tensors["torch"])
    cuda = sorted(k for k in state.tensors if k.startswith("cuda"))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.tensors[k] for k in cuda])
    if "python" in state.plain:
        version, mt, gauss = state.plain["python"]
        random.setstate((version, tuple(mt), gauss))
    if "numpy" in state.plain:
        kind, keys, pos, has_gauss, cached = state.plain["numpy"]
        np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def pack(states: list[RngState]) -> tuple[dict[str, torch.Tensor], dict]:
    """Per-rank states -> (tensors keyed "RANK/name", {"RANK": plain}) for two files."""
    tensors = {
        f"{rank}/{k}": v.cpu() for rank, s in enumerate(states) for k, v in s.tensors.items()
    }
    plain = {str(rank): s.plain for rank, s in enumerate(states)}
    return tensors, plain


def unpack(tensors: dict[str, torch.Tensor], plain: dict, rank: int) -> RngState | None:
    """This rank's states from `pack`'s output, or None if the checkpoint has no such rank."""
    prefix = f"{rank}/"
    mine = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    if not mine:
        return None
    return RngState(mine, plain.get(str(rank), {}))
