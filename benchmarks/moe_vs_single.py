"""Does the split pay? One model vs timestep experts, all fine-tuned from the pretrained parent.

Every arm starts from `expertune/tiny-sdxl-shapes` and learns the same new domain (the
demo's diamonds and plus signs, shapes the parent never drew) with the same total number
of training steps, through `expertune moe`:

- single: one model over 0..999 (the moe run's `baseline = true`, same total steps);
- two: the seed's two experts, strength 0.35 (650..999 and 0..349), half the steps each;
- three: three experts, edges 0 / 333 / 666 / 1000, a third of the steps each;
- two-proportional: the seed's bands, steps proportional to band width (65 % / 35 %).

Measured on held-out images no arm trains on, with the trainer's fixed eval noise:
eval loss at evenly spaced timesteps over 0..999 at four points of training (each
timestep scored by the expert that owns it), overall and on the seed's two bands; and
the prompt-colour accuracy of images generated through each arm's chain (the router, 40
steps, default scheduler) for every colour pair of the new shapes. Repeated over seeds
(training noise, timesteps and data order); differences are paired by seed against the
single model. Writes docs/results/moe_vs_single.md (+ .json, .png).

    python benchmarks/moe_vs_single.py [--seeds 5] [--steps 200] [--work DIR]

Last line: `moe_vs_single_ratio <two-expert / single overall eval loss, mean over seeds>`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
SEED_BAND_EDGE = 350  # the seed's handover: high 350..999, low 0..349
EVAL_POINTS = 4  # eval loss at 1/4, 2/4, 3/4 and the end of every run
EVAL_TIMESTEPS = 12


def arms(steps: int) -> dict[str, dict]:
    """The moe run of each arm: its plan key and its experts' step counts (high first)."""
    high = round(steps * 0.65)
    return {
        "two": {"plan": "strengths = [0.35]", "steps": [steps // 2, steps - steps // 2]},
        "three": {"plan": "edges = [0, 333, 666, 1000]", "steps": _thirds(steps)},
        "two-proportional": {"plan": "strengths = [0.35]", "steps": [high, steps - high]},
    }


def _thirds(steps: int) -> list[int]:
    third = steps // 3
    return [third, third, steps - 2 * third]


def write_data(work: Path) -> Path:
    """Training and held-out images of the new shapes, and the dataloader config."""
    from expertune.data.shape_images import ALL_PAIRS, DEMO_SHAPES, sample_specs
    from expertune.data.shape_images import write_shape_dataset as write

    write(work / "data", sample_specs(48, seed=11, shapes=DEMO_SHAPES))
    write(work / "eval", sample_specs(12, seed=12, pairs=ALL_PAIRS, shapes=DEMO_SHAPES))

    def images(name: str, kind: str, folder: str) -> dict:
        return {
            "id": name,
            "type": "local",
            "dataset_type": kind,
            "instance_data_dir": str(work / folder),
            "caption_strategy": "textfile",
            "resolution": 64,
            "resolution_type": "pixel",
            "crop": True,
            "crop_style": "center",
        }

    text = {"id": "text", "type": "local", "dataset_type": "text_embeds", "default": True}
    config = [images("shapes", "image", "data"), images("held-out", "eval", "eval"), text]
    path = work / "multidatabackend.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def write_moe(work: Path, name: str, arm: dict, seed: int, data: Path, baseline: bool) -> Path:
    """The arm's moe TOML: shared training flags, one [[experts]] table per expert."""
    shared = (
        'pretrained_model_name_or_path = "expertune/tiny-sdxl-shapes"\n'
        f'data_backend_config = "{data}"\nresolution = 64\ntrain_batch_size = 4\n'
        f'learning_rate = 2e-4\nseed = {seed}\nreport_to = "none"\n'
        f"eval_full_range = true\neval_timesteps = {EVAL_TIMESTEPS}\n"
        f"max_train_steps = {sum(arm['steps'])}\n"
        f"eval_steps_interval = {max(1, sum(arm['steps']) // EVAL_POINTS)}\n"
        f"checkpointing_steps = {10 * sum(arm['steps'])}\n"
    )
    experts = "".join(
        f'[[experts]]\nname = "e{i}"\nmax_train_steps = {n}\n'
        f"eval_steps_interval = {max(1, n // EVAL_POINTS)}\n"
        for i, n in enumerate(arm["steps"])
    )
    root = work / f"seed{seed}" / name
    text = f'output_root = "{root}"\n{arm["plan"]}\nbaseline = {str(baseline).lower()}\n'
    path = work / f"{name}-seed{seed}.toml"
    path.write_text(f"{text}[shared]\n{shared}{experts}")
    return path


def full_range_curve(run_dirs: list[tuple[Path, tuple[int, int]]]) -> list[dict[int, float]]:
    """Eval loss per timestep at each eval point, every timestep taken from the expert that
    owns it (its own full-range records at the same fraction of its training)."""
    from expertune.evaluate.records import read_metrics

    points: list[dict[int, float]] = []
    for folder, (lo, hi) in run_dirs:
        records = [r for r in read_metrics(folder)[1] if r["range"] == "full"][-EVAL_POINTS:]
        for index, record in enumerate(records):
            while len(points) <= index:
                points.append({})
            for t, loss in zip(record["timesteps"], record["losses"], strict=True):
                if lo <= t <= hi:
                    points[index][t] = loss
    return points


def summarise(curve: list[dict[int, float]]) -> dict:
    """Overall and per seed-band means of each eval point."""

    def mean(point: dict, keep) -> float:
        return statistics.fmean(v for t, v in point.items() if keep(t))

    return {
        "overall": [mean(p, lambda t: True) for p in curve],
        "high": [mean(p, lambda t: t >= SEED_BAND_EDGE) for p in curve],
        "low": [mean(p, lambda t: t < SEED_BAND_EDGE) for p in curve],
    }


def colour_accuracy_of(pipe) -> float:
    """Prompt-colour accuracy over every colour pair of the new shapes, 40 steps."""
    import torch

    from expertune.data.shape_images import DEMO_SHAPES, grid_specs
    from expertune.evaluate.colour_check import colour_accuracy

    prompts = [s.caption for s in grid_specs(shapes=DEMO_SHAPES)]
    pipe.set_progress_bar_config(disable=True)
    images = pipe(
        prompts,
        num_inference_steps=40,
        generator=torch.Generator().manual_seed(0),
        height=64,
        width=64,
    ).images
    return colour_accuracy(images, prompts)


def run_seed(work: Path, seed: int, steps: int, data: Path) -> dict:
    """Train every arm of one seed; their curves and colour accuracies."""
    from diffusers import StableDiffusionXLPipeline

    from expertune.app.moe import run_moe
    from expertune.config.moe import load_moe
    from expertune.pipeline.routed import load_routed_pipeline

    out = {}
    for index, (name, arm) in enumerate(arms(steps).items()):
        moe = load_moe(str(write_moe(work, name, arm, seed, data, baseline=index == 0)))
        run_moe(moe)
        dirs = [(Path(c.output_dir), c.expert_band()) for c in moe.experts]
        out[name] = summarise(full_range_curve(dirs))
        out[name]["colour"] = colour_accuracy_of(load_routed_pipeline(moe.output_root))
        if moe.baseline is not None:
            base = Path(moe.baseline.output_dir)
            out["single"] = summarise(full_range_curve([(base, (0, 999))]))
            out["single"]["colour"] = colour_accuracy_of(
                StableDiffusionXLPipeline.from_pretrained(base)
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200, help="total training steps per arm")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    from expertune.io import no_progress_bars

    work = args.work or Path(tempfile.mkdtemp(prefix="moe-vs-single-"))
    work.mkdir(parents=True, exist_ok=True)
    data = write_data(work)
    started, results = time.monotonic(), []
    for seed in range(args.seeds):
        with no_progress_bars():
            results.append(run_seed(work, seed, args.steps, data))
        print(f"seed {seed} done after {time.monotonic() - started:.0f}s", flush=True)
    from moe_vs_single_report import write_results  # benchmarks/ is on sys.path when run

    ratio = write_results(results, args, RESULTS, time.monotonic() - started)
    print(f"moe_vs_single_ratio {ratio:.4f}")


if __name__ == "__main__":
    main()
