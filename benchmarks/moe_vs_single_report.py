"""docs/results/moe_vs_single.{md,json,png} from the seeds' results of moe_vs_single.py.

The verdict is computed, not written by hand: an arm wins (or loses) against the single
model only when its paired difference over seeds is more than two standard errors from
zero; otherwise it is within seed noise.
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

ARMS = ("single", "two", "three", "two-proportional")
KEYS = ("overall", "high", "low")


def paired(results: list[dict], arm: str, key: str) -> tuple[float, float]:
    """Mean and standard error over seeds of (arm - single) at the end of training."""

    def value(r: dict, name: str) -> float:
        return r[name]["colour"] if key == "colour" else r[name][key][-1]

    diffs = [value(r, arm) - value(r, "single") for r in results]
    spread = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return statistics.fmean(diffs), spread


def verdict(mean: float, se: float, lower_is_better: bool) -> str:
    if math.isnan(se) or abs(mean) <= 2 * se:  # NaN (one seed) or within two standard errors
        return "within seed noise"
    better = mean < 0 if lower_is_better else mean > 0
    return "better than single" if better else "worse than single"


def _plot(results: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    for ax, key in zip(axes, KEYS, strict=True):
        for arm in ARMS:
            curves = [r[arm][key] for r in results]
            n = min(len(c) for c in curves)
            mean = [statistics.fmean(c[i] for c in curves) for i in range(n)]
            x = [(i + 1) / n for i in range(n)]
            ax.plot(x, mean, marker="o", label=arm)
        ax.set_title(f"eval loss, {key}")
        ax.set_xlabel("fraction of training")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def write_results(results: list[dict], args, folder: Path, seconds: float) -> float:
    """Write the three files; return two / single overall eval loss (mean over seeds)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "moe_vs_single.json").write_text(json.dumps(results, indent=1) + "\n")
    _plot(results, folder / "moe_vs_single.png")
    n = len(results)
    rows = []
    for arm in ARMS:
        final = {k: statistics.fmean(r[arm][k][-1] for r in results) for k in KEYS}
        colour = statistics.fmean(r[arm]["colour"] for r in results)
        if arm == "single":
            cells = ["—"] * 2
        else:
            d, se = paired(results, arm, "overall")
            c, cse = paired(results, arm, "colour")
            cells = [
                f"{d:+.5f} ± {se:.5f} ({verdict(d, se, True)})",
                f"{c:+.1%} ± {cse:.1%} ({verdict(c, cse, False)})",
            ]
        rows.append(
            f"| {arm} | {final['overall']:.5f} | {final['high']:.5f} | {final['low']:.5f} "
            f"| {colour:.1%} | {cells[0]} | {cells[1]} |"
        )
    two, two_se = paired(results, "two", "overall")
    single_seed_sd = statistics.stdev(r["single"]["overall"][-1] for r in results) if n > 1 else 0
    base = statistics.fmean(r["single"]["overall"][-1] for r in results)
    ratio = statistics.fmean(r["two"]["overall"][-1] for r in results) / base
    best = min(ARMS, key=lambda a: statistics.fmean(r[a]["overall"][-1] for r in results))
    text = [
        "# Does the split pay? Timestep experts vs one model",
        "",
        "Written by `make bench-moe` (`benchmarks/moe_vs_single.py`); do not edit by hand.",
        f"{n} seeds, {args.steps} training steps per arm in total, batch 4, 64 px, all arms "
        "fine-tuned from `expertune/tiny-sdxl-shapes` on the demo's new shapes (diamonds, plus "
        f"signs); {seconds / 60:.1f} minutes on this machine.",
        "",
        "Eval loss: 12 held-out images, the trainer's fixed eval noise, 12 evenly spaced "
        "timesteps over 0..999, each scored by the expert owning it; `high` is t >= 350, `low` "
        "t < 350 (the seed's bands). Colour: prompt-colour accuracy of 40-step images of every "
        "colour pair of the new shapes through each arm's chain. Differences are paired by "
        "seed against `single`, ± one standard error; a verdict needs more than two.",
        "",
        "| arm | eval loss | high band | low band | colour | eval loss vs single "
        "| colour vs single |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "![eval loss over training](moe_vs_single.png)",
        "",
        "## Verdict",
        "",
        f"Lowest mean overall eval loss: **{best}**. The seed's two experts vs one model: "
        f"{two:+.5f} ± {two_se:.5f} overall eval loss ({verdict(two, two_se, True)}; ratio "
        f"{ratio:.4f}); the single model's own spread between seeds is {single_seed_sd:.5f}.",
        "",
    ]
    (folder / "moe_vs_single.md").write_text("\n".join(text))
    return ratio
