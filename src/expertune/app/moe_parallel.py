"""`expertune moe --parallel N`: up to N runs at once, each its own process.

Before any worker starts, every run is preflighted (a user error refuses the whole moe
run before anything is written) and the shared caches are filled once here, so the
workers only read them and none runs an encoder pass. Each worker is the plain
`expertune moe --config F --only NAME` a user could run by hand, so a parallel run
trains exactly what the sequential one does: same configs, same seeds, same cached
inputs (a test holds the weights bit-identical). With several GPUs each worker is pinned
to one (CUDA_VISIBLE_DEVICES, round robin); its output goes to OUTPUT_ROOT/logs/NAME.log.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from expertune.errors import UserError

log = logging.getLogger(__name__)

LOGS = "logs"


class WorkerFailed(UserError):
    """A worker process stopped before its run finished."""

    kind = "expert failed"


def train_in_parallel(moe, runs: list, parallel: int, config: str, flags: list[str]) -> None:
    """Train `runs` (TrainConfigs of `moe`) in at most `parallel` worker processes."""
    from expertune.train.preflight import preflight

    for cfg in runs:
        preflight(cfg)
    fill_caches(runs)
    devices = gpu_ids()
    logs = moe.output_root / LOGS
    logs.mkdir(parents=True, exist_ok=True)
    jobs = []
    for i, cfg in enumerate(runs):
        env = worker_env(i, devices, os.environ)
        argv = worker_argv(config, cfg.expert_name, flags)
        jobs.append((cfg.expert_name, argv, env, logs / f"{cfg.expert_name}.log"))
    log.info("[moe] training %s in %d processes", ", ".join(j[0] for j in jobs), parallel)
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        codes = list(pool.map(lambda job: _run(*job), jobs))
    failed = [(job, code) for job, code in zip(jobs, codes, strict=True) if code != 0]
    if failed:
        (name, _, _, path), code = failed[0]
        raise WorkerFailed(
            f"{name} stopped with exit code {code}: {_last_line(path)} (log: {path}); fix "
            "that and run the same command with --resume_from_checkpoint latest"
        )


def worker_env(i: int, devices: list[str], base) -> dict[str, str]:
    """Worker i's environment: with several GPUs, pinned to one of them (round robin)."""
    env = dict(base)
    if len(devices) > 1:
        env["CUDA_VISIBLE_DEVICES"] = devices[i % len(devices)]
    return env


def worker_argv(config: str, name: str, flags: list[str]) -> list[str]:
    """The command one worker runs: the moe command for one run, in this interpreter."""
    return [sys.executable, "-m", "expertune", "moe", "--config", config, "--only", name, *flags]


def _run(name: str, argv: list[str], env: dict, log_path: Path) -> int:
    log.info("[moe] %s: started (log: %s)", name, log_path)
    with open(log_path, "w") as out:
        code = subprocess.run(argv, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    log.info("[moe] %s: %s", name, "finished" if code == 0 else f"stopped (exit {code})")
    return code


def _last_line(path: Path) -> str:
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    return next((line for line in reversed(lines) if line), "no output")


def fill_caches(runs: list) -> None:
    """Build the cache entries every run needs, once per distinct model and data."""
    from expertune.data.training_set import prepare_data
    from expertune.models.load import load_components

    seen = set()
    for cfg in runs:
        key = (
            cfg.pretrained_model_name_or_path,
            cfg.model_family,
            cfg.data_backend_config,
            cfg.instance_data_dir,
            cfg.resolution,
            cfg.cache_dir,
        )
        if key in seen:
            continue
        seen.add(key)
        parts = load_components(
            cfg.pretrained_model_name_or_path,
            family=cfg.model_family,
            allow_pickle=cfg.allow_pickle_weights,
        )
        data = prepare_data(cfg, parts, global_batch=cfg.train_batch_size)
        log.info("[moe] caches ready for %s: %s", cfg.expert_name, data.training.describe())


def gpu_ids() -> list[str]:
    """The GPUs workers are spread over: CUDA_VISIBLE_DEVICES's, else every visible one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]
