"""Two processes on CPU (torchrun, gloo): one writer, one cache build, exact resume."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_support import unet_weights

pytestmark = pytest.mark.slow


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(ws: Path, out: Path, *flags: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    argv += ["--master_port", str(_port()), "-m", "expertune", "train"]
    argv += ["--config", str(ws / "config" / "stage1.env"), f"--output_dir={out}"]
    argv += ["--report_to=none", "--train_batch_size=2", "--max_train_steps=4"]
    argv += ["--checkpointing_steps=2", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_two_processes_write_once_and_resume_exactly(train_ws, tmp_path):
    out = tmp_path / "ddp"
    done = _launch(train_ws, out)
    assert done.stdout.count("trained 4 steps") == 1  # one summary line, from rank 0
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]  # written by rank 0 only
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["samples"] == 4 * 2 * 2  # a global batch of 2 processes x 2
    # cut off after checkpoint-2: resuming on 2 processes ends exactly where the run did
    again = tmp_path / "resumed"
    shutil.copytree(out, again, symlinks=True)  # the published pipeline is a link
    shutil.rmtree(again / "checkpoint-4")
    done = _launch(train_ws, again, "--resume_from_checkpoint=latest")
    assert "trained 2 steps in this run" in done.stdout
    a, b = unet_weights(out), unet_weights(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_with_batch_workers_train_the_same_weights(train_ws, tmp_path):
    """Each rank's DataLoader workers assemble that rank's slice: the same weights as the
    ranks assembling their batches themselves."""
    plain, workers = tmp_path / "plain", tmp_path / "workers"
    _launch(train_ws, plain, "--dataloader_num_workers=0")
    _launch(train_ws, workers, "--dataloader_num_workers=2")
    a, b = unet_weights(plain), unet_weights(workers)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
