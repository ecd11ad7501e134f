"""Ctrl-C (SIGINT) or SIGTERM mid-training: the step finishes, a checkpoint is written,
and the process exits 130 (143) with one line saying how to continue."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest
from train_support import metrics, train_args

from expertune.cli import main
from expertune.train import checkpoint as ckpt

pytestmark = pytest.mark.slow


def _training_two_steps_in(ws, out, flags, **popen) -> subprocess.Popen:
    """A long `expertune train` in its own process, once it has logged two steps."""
    args = train_args(ws, out, "--max_train_steps=100000", *flags)
    proc = subprocess.Popen(
        [sys.executable, "-m", "expertune.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )
    deadline = time.monotonic() + 300
    while not ((out / "metrics.jsonl").is_file() and len(metrics(out)) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    return proc


@pytest.mark.parametrize(
    "sig, code",
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["SIGINT", "SIGTERM", "SIGHUP"],
)
def test_a_signal_saves_a_resumable_checkpoint_and_exits_with_its_code(
    train_ws, tmp_path, sig, code
):
    out = tmp_path / "out"
    flags = ("--checkpointing_steps=0", "--logging_steps=1")  # no checkpoint would be due
    proc = _training_two_steps_in(train_ws, out, flags)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("expertune: interrupted at step ") and "resume_from_checkpoint" in last
    step = int(re.search(r"at step (\d+)", last).group(1))
    assert f"wrote checkpoint-{step}" in last
    assert ckpt.verify(out / f"checkpoint-{step}").step == step
    assert [m["step"] for m in metrics(out)] == list(range(1, step + 1))

    resume = ("--resume_from_checkpoint=latest", f"--max_train_steps={step + 2}")
    assert main(train_args(train_ws, out, *flags, *resume)) == 0
    assert [m["step"] for m in metrics(out)] == list(range(1, step + 3))


def test_ctrl_c_to_the_whole_group_with_batch_workers_still_saves(train_ws, tmp_path):
    """A terminal's Ctrl-C reaches every process of the foreground group, the batch
    workers too: they ignore it, so the run still stops at a step with its checkpoint."""
    import os

    out = tmp_path / "out"
    flags = ("--checkpointing_steps=0", "--logging_steps=1", "--dataloader_num_workers=2")
    flags += ("--gradient_accumulation_steps=8",)  # more micro-batches than are prefetched
    # its own process group, as a shell's foreground job
    proc = _training_two_steps_in(train_ws, out, flags, start_new_session=True)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    step = int(re.search(r"at step (\d+)", err.strip().splitlines()[-1]).group(1))
    assert ckpt.verify(out / f"checkpoint-{step}").step == step
