"""SIGKILL a training process anywhere, resume from `latest`, and end with the weights of
a run that was never interrupted: the issue's crash test, at several kill points."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from train_support import max_abs_diff, metrics, train_args, unet_weights

from expertune.cli import main
from expertune.train import checkpoint as ckpt

pytestmark = pytest.mark.slow

STEPS = 6
FLAGS = (
    f"--max_train_steps={STEPS}",
    "--checkpointing_steps=1",
    "--checkpoints_total_limit=3",
    "--gradient_accumulation_steps=2",  # the data position moves inside a step
    "--lr_scheduler=linear",
    "--lr_warmup_steps=2",
    "--logging_steps=3",
)

# Kills from inside, at an exact point: the process SIGKILLs itself when a function of the
# save path is reached. Test-only patches in a driver script; nothing in the package.
DRIVER = """
import os, signal, sys
from expertune.train import checkpoint, publish

hook, step = sys.argv[1], int(sys.argv[2])


def on(module, name, lands):
    real = getattr(module, name)

    def hooked(*args):
        if lands(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*args)

    setattr(module, name, hooked)


if hook == "writing":  # files written, not yet fsynced or sealed
    on(checkpoint, "fsync_tree", lambda folder: folder.name == f".checkpoint-{step}.tmp")
elif hook == "sealed":  # COMPLETE written, the folder not yet renamed into place
    on(checkpoint, "_publish", lambda tmp, final: final.name == f"checkpoint-{step}")
elif hook == "rotating":  # the new checkpoint in place, an old one renamed for deletion
    on(checkpoint, "remove_tree", lambda path: path.name.endswith(".deleting"))
elif hook == "publishing":  # the final pipeline written, `current` not yet switched
    on(publish, "_switch", lambda store, version: True)

from expertune.cli import main

sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def reference(train_ws, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "out"
    assert main(train_args(train_ws, out, *FLAGS)) == 0
    return out


def _start(args: list[str], tmp_path: Path, hook: str | None = None, step: int = 0):
    if hook is None:
        cmd = [sys.executable, "-m", "expertune.cli", *args]
    else:
        driver = tmp_path / "driver.py"
        driver.write_text(DRIVER)
        cmd = [sys.executable, str(driver), hook, str(step), *args]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


HOOKS = {"writing": 3, "sealed": 5, "rotating": 0, "publishing": 0}


def _killed(train_ws, tmp_path: Path, hook: str) -> Path:
    """Run training in a process that SIGKILLs itself at the hook's point; its OUTPUT_DIR."""
    out = tmp_path / "out"
    proc = _start(train_args(train_ws, out, *FLAGS), tmp_path, hook, HOOKS[hook])
    proc.wait(timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    return out


def _resume_and_compare(train_ws, out: Path, reference: Path, name: str) -> None:
    complete = [p.name for p in ckpt.checkpoint_dirs(out)]
    leftovers = sorted(p.name for p in out.glob(".checkpoint-*"))
    assert main(train_args(train_ws, out, *FLAGS, "--resume_from_checkpoint=latest")) == 0
    diff = max_abs_diff(unet_weights(out), unet_weights(reference))
    print(
        f"[{name}] killed with {complete[-1:]} complete, leftovers {leftovers}: max |diff| {diff}"
    )
    assert diff <= 1e-6
    ours, theirs = metrics(out), metrics(reference)
    assert [m["step"] for m in ours] == list(range(1, STEPS + 1))
    for a, b in zip(ours, theirs, strict=True):
        assert abs(a["loss"] - b["loss"]) <= 1e-6 and a["lr"] == b["lr"], (a, b)
        assert (a["timestep_min"], a["timestep_max"]) == (b["timestep_min"], b["timestep_max"])
    assert [p.name for p in ckpt.checkpoint_dirs(out)][-1] == f"checkpoint-{STEPS}"
    assert not list(out.glob(".checkpoint-*"))


@pytest.mark.parametrize("hook", list(HOOKS))
def test_killed_at_a_save_point_then_resumed_equals_uninterrupted(
    train_ws, reference, tmp_path, hook
):
    out = _killed(train_ws, tmp_path, hook)
    complete = [p.name for p in ckpt.checkpoint_dirs(out)]
    leftovers = sorted(p.name for p in out.glob(".checkpoint-*"))
    expected = {
        "writing": ("checkpoint-2", [".checkpoint-3.tmp"]),  # mid-write: never sealed
        "sealed": ("checkpoint-4", [".checkpoint-5.tmp"]),  # sealed but not in place
        "rotating": ("checkpoint-4", [".checkpoint-1.deleting"]),
        "publishing": (f"checkpoint-{STEPS}", []),  # trained; pipeline never switched in
    }[hook]
    assert (complete[-1], leftovers) == expected
    if hook == "publishing":
        assert not (out / "model_index.json").exists()
    _resume_and_compare(train_ws, out, reference, hook)


def test_killed_at_a_random_moment_then_resumed_equals_uninterrupted(train_ws, reference, tmp_path):
    """From outside: once checkpoint-k exists (k random), SIGKILL within a few milliseconds,
    i.e. somewhere in step k+1, its checkpoint write, or rotation."""
    pick = random.Random(os.getpid())
    k, delay = pick.randint(1, STEPS - 1), pick.uniform(0.0, 0.03)
    out = tmp_path / "out"
    proc = _start(train_args(train_ws, out, *FLAGS), tmp_path)
    deadline = time.monotonic() + 300
    while not (out / f"checkpoint-{k}").is_dir():
        assert proc.poll() is None, f"ended before checkpoint-{k}: {proc.stderr.read()}"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"finished before the kill (k={k})"
    _resume_and_compare(train_ws, out, reference, f"random k={k} +{delay * 1000:.0f} ms")
