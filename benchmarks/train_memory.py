"""Peak memory of `expertune train` against a bare PyTorch loop, each in its own process.

Both children load the same tiny SDXL model and cached data through the Trainer's setup
(model, encoders, caches in memory), then train the same steps, batch and band: the bare
one with only forward, loss, backward and AdamW (benchmarks/train_step.py's bare loop),
expertune with its whole loop (checkpoint at the end, metrics, guards). Peak RSS is each
child's own ru_maxrss, so the ratio is what expertune's loop adds on top of the same
setup. Target <= 1.10.

    python benchmarks/train_memory.py [--steps 30] [--batch 4]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(kind: str, env: Path, out: Path, steps: int, batch: int) -> None:
    """Run one arm in this process and print its peak RSS in MiB as JSON."""
    sys.path.insert(0, str(HERE))
    from train_step import bare_run, expertune_run

    if kind == "bare":
        bare_run(env, steps, batch)
    else:
        expertune_run(env, out, steps, batch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"kind": kind, "peak_rss_mib": peak}))


def measure(kind: str, env: Path, out: Path, steps: int, batch: int) -> float:
    argv = [sys.executable, __file__, "--child", kind, "--env", str(env), "--out", str(out)]
    argv += ["--steps", str(steps), "--batch", str(batch)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mib"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--child", choices=("bare", "expertune"))
    p.add_argument("--env", type=Path)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if args.child:
        child(args.child, args.env, args.out, args.steps, args.batch)
        return
    sys.path.insert(0, str(HERE))
    from train_step import prepare

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        env = prepare(work, args.steps)
        measure("bare", env, work / "warm", args.steps, args.batch)  # fills the cache
        bare = measure("bare", env, work / "bare-run", args.steps, args.batch)
        ours = measure("expertune", env, work / "run", args.steps, args.batch)
    result = {"bare_peak_rss_mib": bare, "expertune_peak_rss_mib": ours, "ratio": ours / bare}
    print(json.dumps(result, indent=2))
    print(f"ratio peak RSS expertune/bare = {result['ratio']:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
