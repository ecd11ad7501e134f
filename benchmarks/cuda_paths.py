"""The GPU code paths in one short run: the device check for a machine with CUDA.

Never part of `make test` or `make bench` (CI has no GPU). Each check trains the tiny
SDXL model a few steps through `expertune train`, in a process of its own, with one GPU
option, and reads what the run left: the exit code, a published UNet, every logged loss
finite, the synced throughput. Two in-process checks look where the option acts: the
AdamW the trainer builds for CUDA parameters is torch's fused one, and batches from the
DataLoader workers arrive in pinned memory. The last is `expertune generate` through the
timestep router with `--offload-idle` (two experts, the idle one in CPU memory).

Without CUDA it refuses in one line, unless `--allow-cpu` (to check this harness on a
CPU): then the GPU-only options (fp16, 8-bit AdamW, --offload-idle) must be refused in one
line each (counted as passing), and torch.compile uses the eager backend (inductor takes
minutes on a CPU). Measured on this project's 2-core CPU machine: 11/11 in 66 s.

    python benchmarks/cuda_paths.py [--work DIR] [--steps 6] [--allow-cpu]

The last line is `cuda paths ok: N/M`.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

GPU_ONLY = ("--mixed_precision=fp16", "--optimizer=adamw8bit")
CHECKS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fp32, fused AdamW", ()),
    ("bf16 autocast", ("--mixed_precision=bf16",)),
    ("fp16 autocast + gradient scaler", ("--mixed_precision=fp16",)),
    ("torch.compile", ("--torch_compile",)),
    ("8-bit AdamW (bitsandbytes)", ("--optimizer=adamw8bit",)),
    ("DataLoader workers", ("--dataloader_num_workers=2",)),
    ("gradient checkpointing + bf16", ("--gradient_checkpointing", "--mixed_precision=bf16")),
    ("LoRA + bf16", ("--model_type=lora", "--lora_rank=8", "--mixed_precision=bf16")),
)


def prepare(work: Path, steps: int) -> Path:
    from expertune.app.demo import write_configs
    from expertune.data.demo_images import make_demo_images

    make_demo_images(work / "data", n=8, size=64)
    stage1, _ = write_configs(work, steps)
    return stage1


def train(work: Path, config: Path, name: str, flags: tuple[str, ...], steps: int) -> dict:
    """One `expertune train` run; what it left behind."""
    out = work / name
    argv = [sys.executable, "-m", "expertune", "train", "--config", str(config)]
    argv += ["--pretrained_model_name_or_path=expertune/tiny-sdxl", f"--output_dir={out}"]
    argv += [f"--max_train_steps={steps}", "--checkpointing_steps=0", "--report_to=none"]
    argv += ["--train_batch_size=4", "--logging_steps=2", *flags]
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    result = {"exit": done.returncode, "s": time.perf_counter() - began}
    result["last_line"] = (done.stderr.strip().splitlines() or [""])[-1]
    rows = []
    if (out / "metrics.jsonl").is_file():
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    result["steps"] = len(rows)
    result["finite"] = bool(rows) and all(math.isfinite(r["loss"]) for r in rows)
    synced = [r["samples_per_s_synced"] for r in rows if r.get("samples_per_s_synced")]
    result["samples_per_s"] = synced[-1] if synced else None
    result["published"] = (out / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    return result


def passed(result: dict, steps: int, expect_refusal: bool) -> bool:
    if expect_refusal:  # no GPU: one line, exit 2, nothing trained
        return result["exit"] == 2 and result["steps"] == 0 and "expertune:" in result["last_line"]
    return (
        result["exit"] == 0
        and result["published"]
        and result["finite"]
        and result["steps"] == steps
    )


def fused_adamw_on(device: str) -> bool:
    """The optimizer the trainer builds for parameters on `device` is torch's fused AdamW
    (on the CPU too)."""
    from expertune.config import load_config
    from expertune.train.optimizers import build_optimizer

    cfg = load_config(None, ["--model_name=expertune/tiny-sdxl"])
    params = [torch.nn.Parameter(torch.zeros(8, device=device))]
    return bool(build_optimizer(cfg, params).defaults.get("fused"))


def pinned_batches(device: str) -> bool:
    """Batches from the DataLoader workers arrive pinned exactly when the device is a GPU,
    and reach that device."""
    from types import SimpleNamespace

    from expertune.train.batches import BatchSource, PrefetchedBatches

    class Numbers(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return 8

        def __getitem__(self, i: int) -> dict:
            return {"latents": torch.full((4, 8, 8), float(i))}

    acc = SimpleNamespace(process_index=0, num_processes=1, device=torch.device(device))
    ahead = PrefetchedBatches(BatchSource(Numbers(), 0, 2, acc), start=0, count=4, workers=2)
    try:
        host = next(ahead._batches)
        on_device = ahead.batch(2)["latents"]
        pinned = host["latents"].is_pinned() == (device == "cuda")
        return pinned and on_device.device.type == device
    finally:
        ahead.close()


def generate_offloaded(work: Path, base: Path, steps: int, device: str) -> dict:
    """A stage-two expert beside `base`, then both through the router, the idle one
    offloaded to CPU memory."""
    refiner = train(work, work / "config" / "stage2.env", "refiner", (), steps)
    argv = [sys.executable, "-m", "expertune", "generate", "--base", str(base)]
    argv += ["--refiner", str(work / "refiner"), "--prompt", "a red circle", "--steps", "8"]
    argv += ["--device", device, "--offload-idle", "--out", str(work / "offloaded.png")]
    done = subprocess.run(argv, cwd=work, capture_output=True, text=True)
    return {"exit": done.returncode, "image": (work / "offloaded.png").is_file(),
            "refiner_exit": refiner["exit"],
            "last_line": (done.stderr.strip().splitlines() or [""])[-1]}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None, help="kept; a temp folder if not given")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--allow-cpu", action="store_true", help="check the harness on a CPU")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    if not gpu and not args.allow_cpu:
        print("cuda_paths: no CUDA device here; run it on a GPU machine (or --allow-cpu)")
        return 2
    device = "cuda" if gpu else "cpu"
    work = args.work or Path(tempfile.mkdtemp(prefix="cuda-paths-"))
    work.mkdir(parents=True, exist_ok=True)
    config = prepare(work, args.steps)
    print(f"torch {torch.__version__}, device {device}, work {work}", flush=True)
    ok, total = 0, 0
    for i, (what, flags) in enumerate(CHECKS):
        refused = not gpu and any(f in GPU_ONLY for f in flags)
        if not gpu and "--torch_compile" in flags:
            flags = (*flags, "--torch_compile_backend=eager")
        result = train(work, config, f"run{i}", flags, args.steps)
        good = passed(result, args.steps, expect_refusal=refused)
        ok, total = ok + good, total + 1
        sps = result["samples_per_s"]
        note = result["last_line"][:90]
        if good:
            note = "refused (no GPU), as expected" if refused else "losses finite, published"
        print(f"{'ok  ' if good else 'FAIL'} {what:34s} exit {result['exit']} "
              f"{result['s']:6.1f}s  {f'{sps:.1f} samples/s' if sps else ''}  {note}",
              flush=True)  # fmt: skip
    for what, check in (("fused AdamW", fused_adamw_on), ("pinned batches", pinned_batches)):
        good = check(device)
        ok, total = ok + good, total + 1
        print(f"{'ok  ' if good else 'FAIL'} {what}", flush=True)
    result = generate_offloaded(work, work / "run0", args.steps, device)
    good = result["refiner_exit"] == 0 and result["exit"] == 0 and result["image"]
    if not gpu:  # nothing to offload to: one line, as the other GPU-only options
        good = result["refiner_exit"] == 0 and result["exit"] == 2
    ok, total = ok + good, total + 1
    print(f"{'ok  ' if good else 'FAIL'} {'generate, router, --offload-idle':34s} "
          f"exit {result['exit']}  {result['last_line'][:90]}", flush=True)  # fmt: skip
    print(f"cuda paths ok: {ok}/{total}")
    return 0 if ok == total else 1


if __name__ == "__main__":
    sys.exit(main())
