"""The band plan as an inline SVG: bands in denoising order (t = T-1 on the left, 0 on the
right), this expert's band highlighted, each handover labelled with its diffusers
`denoising_end` / `denoising_start` value."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD = 640, 92, 20


def plan_edges(band: Sequence[int], num_train_timesteps: int) -> list[int]:
    """Edges of a plan of at most two experts that holds `band` (when the plan is unknown)."""
    lo, hi = band
    return sorted({0, lo, hi + 1, num_train_timesteps})


def band_svg(
    band: Sequence[int] | None,
    num_train_timesteps: int,
    edges: Sequence[int] | None = None,  # the whole plan, 0 .. T; None: derived from band
    names: Sequence[str] | None = None,  # one per band in ascending order, shown inside it
) -> str:
    """An SVG element (as text) showing the plan and this expert's place in it (`band`;
    None highlights none, for the whole chain's view)."""
    T = num_train_timesteps
    edges = sorted(edges) if edges else plan_edges(band, T)
    span = WIDTH - 2 * PAD

    def x(t: float) -> float:
        return PAD + span * (T - t) / T

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="band plan">'
    ]
    for i, (a, b) in enumerate(itertools.pairwise(edges)):
        mine = band is not None and [a, b - 1] == list(band)
        fill = "#2e75b6" if mine else "#d0d7de"
        colour = "white" if mine else "#333"
        label = f"[{a}, {b - 1}]" + (" this expert" if mine else "")
        label = f"{names[i]} {label}" if names else label
        parts.append(
            f'<rect x="{x(b):.1f}" y="22" width="{x(a) - x(b):.1f}" height="30" '
            f'fill="{fill}" stroke="white"/>'
        )
        parts.append(
            f'<text x="{(x(a) + x(b)) / 2:.1f}" y="42" text-anchor="middle" '
            f'font-size="12" fill="{colour}">{escape(label)}</text>'
        )
    for edge in edges[1:-1]:
        fraction = 1 - edge / T
        parts.append(
            f'<line x1="{x(edge):.1f}" y1="16" x2="{x(edge):.1f}" y2="58" stroke="#c0392b"/>'
            f'<text x="{x(edge):.1f}" y="72" text-anchor="middle" font-size="11" '
            f'fill="#c0392b">handover at t={edge} (denoising_end {fraction:g})</text>'
        )
    parts.append(
        f'<text x="{PAD}" y="12" font-size="11" fill="#555">t={T - 1} (pure noise)</text>'
        f'<text x="{WIDTH - PAD}" y="12" font-size="11" fill="#555" '
        'text-anchor="end">t=0 (clean)</text>'
        f'<text x="{PAD}" y="88" font-size="10" fill="#777">denoising runs left to right</text>'
        "</svg>"
    )
    return "".join(parts)
