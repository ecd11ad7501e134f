"""`make bench-peer`: expertune train against SimpleTuner on the same tiny job, end to end.

Both train a full fine-tune of the embedded tiny SDXL model (`expertune/tiny-sdxl`) on
the same 8 demo images at 64 px, batch 4, 30 steps, AdamW at 1e-4 with a constant
schedule, no validation, no intermediate checkpoints, each with a fresh cache. Measured:

- wall time from the command's start to the saved model (the final UNet file's mtime),
  and to the command's exit;
- steady-state seconds per step: the median over steps 11..30. expertune's come from
  its metrics.jsonl (host-timed per step, exact on CPU); SimpleTuner's from the moments
  its progress bar first shows each step count on stderr (read here as it is written).

expertune runs from this interpreter (the project's venv); SimpleTuner from its own venv
(benchmarks/peer/install.sh), since the two pin different diffusers and transformers.
SimpleTuner's `train` exits 0 after a crash, so success is the saved model, not the exit
code. One untimed warm-up round (both arms) comes first, so that both read their
libraries from a warm page cache; then `--rounds` timed rounds, each arm from an empty
cache every time. The last line printed is the median of the per-round ratios
(SimpleTuner / expertune, end to end and per step).

    python benchmarks/peer/peer_bench.py [--peer-venv benchmarks/peer/.venv] [--work DIR]
        [--rounds 3] [--warmup 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS, BATCH, RESOLUTION, IMAGES, LR = 30, 4, 64, 8, 1e-4
STEADY_FROM = 11  # steps before this are warm-up (first-call allocations, caches)

SITECUSTOMIZE = '''"""No NVIDIA driver here: SimpleTuner's collate always calls .pin_memory()."""
import torch

torch.Tensor.pin_memory = lambda self, *args, **kwargs: self
'''


def dataloader(data: Path, cache: Path) -> list[dict]:
    """One image dataset and one text-embed cache, in the format both tools read."""
    return [
        {
            "id": "shapes",
            "type": "local",
            "dataset_type": "image",
            "instance_data_dir": str(data),
            "caption_strategy": "textfile",
            "resolution": RESOLUTION,
            "resolution_type": "pixel",
            "minimum_image_size": 0,
            "crop": True,
            "crop_style": "center",
            "crop_aspect": "square",
            "repeats": 0,
            "cache_dir_vae": str(cache / "vae"),
        },
        {
            "id": "text-embeds",
            "type": "local",
            "dataset_type": "text_embeds",
            "default": True,
            "cache_dir": str(cache / "text"),
        },
    ]


def prepare(work: Path) -> tuple[Path, Path]:
    from expertune.data.demo_images import make_demo_images
    from expertune.models.embedded import tiny_model_folder

    data = work / "data"
    make_demo_images(data, n=IMAGES)
    return Path(tiny_model_folder()), data


class StepClock:
    """Reads a process's stderr as it comes and notes when each `N/STEPS` first appears."""

    def __init__(self, stream, log: Path, start: float) -> None:
        self.first_seen: dict[int, float] = {}
        self._pattern = re.compile(rb"(\d+)/" + str(STEPS).encode() + rb" ")
        self._thread = threading.Thread(target=self._read, args=(stream, log, start))
        self._thread.start()

    def _read(self, stream, log: Path, start: float) -> None:
        with open(log, "wb") as out:
            while chunk := stream.read1(65536):
                now = time.perf_counter() - start
                out.write(chunk)
                for match in self._pattern.finditer(chunk):
                    self.first_seen.setdefault(int(match.group(1)), now)

    def join(self) -> None:
        self._thread.join()

    def step_seconds(self) -> dict[int, float]:
        seen = self.first_seen
        return {n: seen[n] - seen[n - 1] for n in sorted(seen) if n >= 1 and n - 1 in seen}


def run(argv: list[str], cwd: Path, env: dict, log: Path, saved: Path) -> dict:
    began_wall, began = time.time(), time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    clock = StepClock(proc.stdout, log, began)
    code = proc.wait()
    clock.join()
    to_exit = time.perf_counter() - began
    result = {"exit_code": code, "to_exit_s": to_exit, "saved": saved.is_file()}
    if saved.is_file():
        result["to_saved_model_s"] = saved.stat().st_mtime - began_wall
    result["progress_step_s"] = clock.step_seconds()
    return result


def steady(per_step: dict[int, float]) -> float | None:
    values = [s for n, s in per_step.items() if n >= STEADY_FROM]
    return statistics.median(values) if values else None


def expertune_run(work: Path, model: Path, data: Path, threads: int) -> dict:
    conf = work / "expertune"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "multidatabackend.json").write_text(
        json.dumps(dataloader(data, conf / "cache"), indent=2)
    )
    out = conf / "output"
    argv = [sys.executable, "-m", "expertune", "train"]
    argv += [
        f"--pretrained_model_name_or_path={model}",
        "--model_family=sdxl",
        "--model_type=full",
        f"--data_backend_config={conf / 'multidatabackend.json'}",
        f"--cache_dir={conf / 'cache'}",
        f"--output_dir={out}",
        f"--resolution={RESOLUTION}",
        f"--train_batch_size={BATCH}",
        f"--max_train_steps={STEPS}",
        f"--learning_rate={LR}",
        "--lr_scheduler=constant",
        "--checkpointing_steps=0",
        "--report_to=none",
        "--seed=42",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = run(
        argv, conf, env, conf / "run.log", out / "unet" / "diffusion_pytorch_model.safetensors"
    )
    if (out / "metrics.jsonl").is_file():
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        result["step_s"] = {r["step"]: BATCH / r["samples_per_s"] for r in rows}
    return result


def simpletuner_run(work: Path, model: Path, data: Path, venv: Path, threads: int) -> dict:
    conf = work / "simpletuner"
    (conf / "shim").mkdir(parents=True, exist_ok=True)
    (conf / "shim" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (conf / "multidatabackend.json").write_text(
        json.dumps(dataloader(data, conf / "cache"), indent=2)
    )
    out = conf / "output"
    config = {
        "model_family": "sdxl",
        "model_type": "full",
        "pretrained_model_name_or_path": str(model),
        "pretrained_vae_model_name_or_path": str(model),
        "data_backend_config": str(conf / "multidatabackend.json"),
        "output_dir": str(out),
        "resolution": RESOLUTION,
        "resolution_type": "pixel",
        "minimum_image_size": 0,
        "train_batch_size": BATCH,
        "max_train_steps": STEPS,
        "num_train_epochs": 0,
        "learning_rate": LR,
        "lr_scheduler": "constant",
        "lr_warmup_steps": 0,
        "optimizer": "torch-adamw",
        "mixed_precision": "no",
        "gradient_checkpointing": False,
        "seed": 42,
        "checkpoint_step_interval": 10 * STEPS,  # none during the run
        "validation_disable": True,
        "report_to": "none",
        "disable_benchmark": True,
        "torch_num_threads": threads,
        "resume_from_checkpoint": "",
        "caption_dropout_probability": 0.0,
        "push_to_hub": False,
    }
    (conf / "config.json").write_text(json.dumps(config, indent=2))
    env = {
        **os.environ,
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(conf / "shim"),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MIXED_PRECISION": "no",  # else its `accelerate launch` line says bf16
    }
    env.pop("VIRTUAL_ENV", None)
    argv = [str(venv / "bin" / "simpletuner"), "train"]
    saved = out / "pipeline" / "unet" / "diffusion_pytorch_model.safetensors"
    result = run(argv, conf, env, conf / "run.log", saved)
    result["step_s"] = result.pop("progress_step_s")
    return result


def one_round(folder: Path, model: Path, data: Path, args) -> dict[str, dict]:
    """Both arms once, each from an empty cache of its own under `folder`."""
    results = {"expertune": expertune_run(folder, model, data, args.threads)}
    results["simpletuner"] = simpletuner_run(folder, model, data, args.peer_venv, args.threads)
    for r in results.values():
        r["steady_step_s"] = steady(r.get("step_s", {}))
    return results


def describe(name: str, r: dict) -> str:
    end = r.get("to_saved_model_s")
    end_text = f"{end:.1f}s" if end is not None else "no saved model"
    step = r["steady_step_s"]
    step_text = f"{step:.3f}s" if step is not None else "n/a"
    return (
        f"{name}: start to saved model {end_text}, to exit {r['to_exit_s']:.1f}s "
        f"(exit code {r['exit_code']}), steady-state {step_text}/step "
        f"(median of steps {STEADY_FROM}..{STEPS})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peer-venv", type=Path, default=HERE / ".venv")
    parser.add_argument("--work", type=Path, default=None, help="kept; a temp folder if not given")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads of both (issue 11 gives 2)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median is kept)")
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed rounds first (page cache, .pyc files)"
    )
    args = parser.parse_args()
    args.peer_venv = args.peer_venv.resolve()  # each arm runs in its own folder
    if not (args.peer_venv / "bin" / "simpletuner").is_file():
        print(f"no simpletuner in {args.peer_venv}; run benchmarks/peer/install.sh first")
        return 2
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-peer-"))
    work.mkdir(parents=True, exist_ok=True)
    model, data = prepare(work)
    print(f"work folder: {work}  (logs: */*/run.log)", flush=True)
    print(f"threads: {args.threads}; load average before: {os.getloadavg()[0]:.2f}", flush=True)
    rounds = []
    for n in range(args.warmup + args.rounds):
        kind = "warm-up" if n < args.warmup else "timed"
        results = one_round(work / f"round-{n}", model, data, args)
        print(f"round {n} ({kind}), load average {os.getloadavg()[0]:.2f}:", flush=True)
        for name, r in results.items():
            print("  " + describe(name, r), flush=True)
        if not all(r.get("saved") for r in results.values()):
            failed = [k for k, r in results.items() if not r.get("saved")]
            print(f"peer ratio: n/a ({', '.join(failed)} saved no model; see {work}/*/*/run.log)")
            return 1
        if n >= args.warmup:
            rounds.append(results)
    (work / "results.json").write_text(json.dumps(rounds, indent=1))
    return summarise(rounds)


def summarise(rounds: list[dict[str, dict]]) -> int:
    """Medians over the timed rounds; the headline is the median of per-round ratios
    (the two arms of a round run back to back, so slow drift of the machine cancels)."""
    med = statistics.median

    def arm(name: str, key: str) -> float:
        return med(r[name][key] for r in rounds)

    for name in ("expertune", "simpletuner"):
        print(
            f"{name} over {len(rounds)} rounds: start to saved model median "
            f"{arm(name, 'to_saved_model_s'):.1f}s (each: "
            + " ".join(f"{r[name]['to_saved_model_s']:.1f}" for r in rounds)
            + f"), steady-state median {arm(name, 'steady_step_s'):.3f}s/step",
            flush=True,
        )

    def ratio(key: str) -> float:
        return med(r["simpletuner"][key] / r["expertune"][key] for r in rounds)

    e2e, per_step = ratio("to_saved_model_s"), ratio("steady_step_s")
    print(
        f"peer ratio (simpletuner / expertune), median of {len(rounds)} rounds: end to end "
        f"{e2e:.2f}x, per step {per_step:.2f}x (targets >= 5x and >= 2x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
