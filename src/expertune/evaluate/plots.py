"""Figures as PNG files, drawn with matplotlib's object API (a Figure with the Agg canvas),
so no pyplot state and no display are involved."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _figure(width: float = 6.4, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return fig, fig.add_subplot()


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def ema(values: Sequence[float], weight: float = 0.9) -> list[float]:
    """Exponential moving average, started at the first value."""
    out, avg = [], None
    for v in values:
        avg = v if avg is None else weight * avg + (1 - weight) * v
        out.append(avg)
    return out


def loss_curve(train: list[dict], evals: list[dict], out: Path) -> Path:
    """Training loss per step (raw and smoothed) and the eval loss over the band."""
    fig, ax = _figure()
    if train:
        steps, losses = [r["step"] for r in train], [r["loss"] for r in train]
        ax.plot(steps, losses, color="#9bb7d4", linewidth=0.8, label="training loss")
        ax.plot(steps, ema(losses), color="#1f4e79", label="training loss (EMA)")
    band = [r for r in evals if r.get("range") == "band"]
    if band:
        ax.plot(
            [r["step"] for r in band],
            [r["eval_loss"] for r in band],
            "o-",
            color="#c0392b",
            label="eval loss (band mean)",
        )
    ax.set_xlabel("step")
    ax.set_ylabel("MSE")
    ax.grid(alpha=0.3)
    if train or band:
        ax.legend(fontsize=8)
    return _save(fig, out)


def eval_loss_curves(evals: list[dict], band: Sequence[int] | None, out: Path) -> Path:
    """Eval loss against timestep, one line per evaluation (latest darkest), band shaded."""
    fig, ax = _figure()
    if band:
        ax.axvspan(band[0], band[1], color="#f3e6c4", alpha=0.6, label=f"band {list(band)}")
    for name, style, rgb in (("full", "--", (0.8, 0.4, 0.1)), ("band", "-", (0.1, 0.2, 0.5))):
        records = [r for r in evals if r.get("range") == name]
        for i, r in enumerate(records):
            shade = 0.25 + 0.75 * (i + 1) / len(records)
            label = f"step {r['step']} ({name})" if i == len(records) - 1 or i == 0 else None
            ax.plot(
                r["timesteps"],
                r["losses"],
                style,
                marker=".",
                color=(*rgb, shade),
                label=label,
            )
    ax.set_xlabel("timestep")
    ax.set_ylabel("eval MSE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def compare_bands(result: dict, out: Path) -> Path:
    """`expertune evaluate`: each expert on its band (solid), the baseline (dashed)."""
    fig, ax = _figure(7.2, 4.0)
    for i, row in enumerate(result["bands"]):
        lo, hi = row["band"]
        ax.axvspan(lo, hi, color="#f3e6c4" if i % 2 == 0 else "#e3eef7", alpha=0.6)
        ax.plot(
            row["timesteps"], row["expert_losses"], "o-", label=f"{row['expert']} {row['band']}"
        )
        if row.get("baseline_losses"):
            ax.plot(
                row["timesteps"],
                row["baseline_losses"],
                "x--",
                color="#555555",
                label="baseline" if i == 0 else None,
            )
    ax.set_xlabel("timestep")
    ax.set_ylabel("eval MSE")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


def run_loss_curves(curves: dict[str, list[dict]], out: Path) -> Path:
    """Training loss (EMA-smoothed) per step of every run of a moe run, one line each."""
    fig, ax = _figure(7.2, 4.0)
    for name, train in curves.items():
        if train:
            steps, losses = [r["step"] for r in train], [r["loss"] for r in train]
            style = "--" if name in ("baseline", "parent") else "-"
            ax.plot(steps, ema(losses), style, label=f"{name} (EMA)")
    ax.set_xlabel("step")
    ax.set_ylabel("training MSE")
    ax.grid(alpha=0.3)
    if any(curves.values()):
        ax.legend(fontsize=8)
    return _save(fig, out)
