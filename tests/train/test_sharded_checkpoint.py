"""Checkpoint save, resume and publish with parameters sharded by FSDP2 (2 CPU processes).

accelerate chooses FSDP only on GPUs, so this shards the tiny UNet with torch's own
`fully_shard` and drives checkpoint.py / run.py through accelerate's `get_state_dict`
(fsdp2_worker.py). The whole Trainer under `accelerate launch` with an FSDP config is
not exercised here (see docs/scale-out.md).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fsdp2_worker.py")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_fsdp2_shards_gather_to_rank0_and_resume_into_every_rank(tiny_model_dir, tmp_path):
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    argv += ["--master_port", str(_port()), str(WORKER)]
    argv += [str(Path(tiny_model_dir) / "unet"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for rank in (0, 1):
        report = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert report == {
            "sharded": True,  # each rank really held only part of the parameters
            "gathered_on_rank0_only": True,
            "gathered_equals_unsharded_training": True,
            "weights_back": True,  # each rank's shards, bit for bit, after resume
            "optimizer_back": True,
            "publish": True,  # rank 0 rebuilt a plain UNet with the gathered weights
        }, (rank, report)
    # only rank 0 wrote, and what it wrote is a complete, verified checkpoint
    from expertune.train.checkpoint import verify

    assert verify(tmp_path / "checkpoint-1").step == 1
