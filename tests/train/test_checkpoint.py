"""Checkpoints are complete or invisible, `latest` is the newest one that verifies, and a
failed write (disk full, no permission) leaves the earlier checkpoints as they were."""

from __future__ import annotations

import errno
import json
import random
import resource
import signal

import numpy as np
import pytest
import torch

from expertune.errors import ConfigError, SaveError
from expertune.train import checkpoint as ckpt
from expertune.train import rng as rng_io
from expertune.train.storage import os_error_of


class Run:
    """A tiny model, optimizer and lr schedule: enough state to checkpoint and compare."""

    def __init__(self, seed: int = 0) -> None:
        torch.manual_seed(seed)
        self.model = torch.nn.Linear(4, 3)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: 1.0 / (1 + s))
        self.gen = torch.Generator().manual_seed(seed)

    def step(self) -> None:
        loss = self.model(torch.randn(2, 4, generator=self.gen)).pow(2).mean()
        loss.backward()
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad()

    def save(self, out, step, run_id="r1", limit=None):
        state = ckpt.LoopState(step=step, position=step * 2, run_id=run_id)
        weights = dict(self.model.named_parameters())
        rng = [rng_io.capture({"data": self.gen})]
        return ckpt.save_checkpoint(out, state, weights, self.opt, self.sched, rng, limit)


def _saved(out, steps, **kw):
    run = Run()
    for step in range(1, steps + 1):
        run.step()
        run.save(out, step, **kw)
    return run


def test_round_trip_restores_weights_optimizer_schedule_and_rng(tmp_path):
    run = _saved(tmp_path, 2)
    expected_draw = torch.randn(3, generator=run.gen)
    fresh = Run(seed=1)
    state, weights, rng = ckpt.load_checkpoint(tmp_path / "checkpoint-2", fresh.opt, fresh.sched)
    assert (state.step, state.position, state.run_id) == (2, 4, "r1")
    for name, value in run.model.named_parameters():
        assert torch.equal(weights[name], value.detach())
    assert fresh.sched.state_dict()["last_epoch"] == 2
    assert fresh.opt.state_dict()["state"][0]["step"] == 2
    rng_io.restore(rng, {"data": fresh.gen})
    assert torch.equal(torch.randn(3, generator=fresh.gen), expected_draw)


def test_global_python_numpy_and_torch_generators_round_trip():
    state = rng_io.capture({})
    drawn = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(5), np.random.seed(5), torch.manual_seed(5)
    tensors, plain = rng_io.pack([state])
    rng_io.restore(rng_io.unpack(tensors, json.loads(json.dumps(plain)), 0), {})
    assert (random.random(), np.random.rand(), torch.rand(1)) == drawn
    assert rng_io.unpack(tensors, plain, rank=1) is None  # a rank the checkpoint never had


def test_an_unsealed_folder_is_never_listed_and_is_cleared_by_the_next_save(tmp_path):
    run = _saved(tmp_path, 1)
    partial = tmp_path / ".checkpoint-2.tmp"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    unsealed = tmp_path / "checkpoint-3"  # a name in place but no COMPLETE
    unsealed.mkdir()
    assert ckpt.checkpoint_dirs(tmp_path) == [tmp_path / "checkpoint-1"]
    assert ckpt.resolve_resume(tmp_path, "latest") == tmp_path / "checkpoint-1"
    with pytest.raises(ConfigError, match="not a complete checkpoint"):
        ckpt.resolve_resume(tmp_path, "checkpoint-3")
    run.save(tmp_path, 4)
    assert not partial.exists()


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda d: _flip_byte(d / "model.safetensors"), "does not match its checksum"),
        (lambda d: _truncate(d / "optimizer.pt"), "has 10 bytes"),
        (lambda d: (d / "rng.json").unlink(), "rng.json is missing"),
        (lambda d: (d / "COMPLETE").write_text("{"), "manifest is unreadable"),
    ],
    ids=["flipped-byte", "truncated", "missing-file", "bad-manifest"],
)
def test_a_corrupt_checkpoint_is_skipped_by_latest_and_refused_by_name(
    tmp_path, caplog, damage, reason
):
    _saved(tmp_path, 2)
    damage(tmp_path / "checkpoint-2")
    with pytest.raises(ckpt.CorruptCheckpoint, match=reason):
        ckpt.verify(tmp_path / "checkpoint-2")
    assert ckpt.resolve_resume(tmp_path, "latest") == tmp_path / "checkpoint-1"
    assert "skipped corrupt checkpoint-2" in caplog.text
    with pytest.raises(ConfigError, match="checkpoint-2 is corrupt") as err:
        ckpt.resolve_resume(tmp_path, "checkpoint-2")
    assert reason in str(err.value)


def test_latest_with_only_corrupt_checkpoints_names_them(tmp_path):
    _saved(tmp_path, 1)
    _flip_byte(tmp_path / "checkpoint-1" / "model.safetensors")
    with pytest.raises(ConfigError) as err:
        ckpt.resolve_resume(tmp_path, "latest")
    assert "checkpoint-1 (model.safetensors does not match its checksum)" in str(err.value)


def test_rotation_keeps_the_newest_and_deletes_only_after_the_new_one_is_complete(
    tmp_path, monkeypatch
):
    run = _saved(tmp_path, 3, limit=2)
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)] == ["checkpoint-2", "checkpoint-3"]

    def disk_full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "_seal", disk_full)
    run.step()
    with pytest.raises(SaveError) as err:
        run.save(tmp_path, 4, limit=2)
    message = str(err.value)
    assert "checkpoint-4" in message and "No space left on device" in message
    assert "checkpoint-3 is intact" in message and "\n" not in message
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)] == ["checkpoint-2", "checkpoint-3"]
    assert not (tmp_path / ".checkpoint-4.tmp").exists()
    ckpt.verify(tmp_path / "checkpoint-3")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT])
def test_every_disk_error_is_one_line_with_a_fix(tmp_path, monkeypatch, code):
    run = _saved(tmp_path, 1)

    def failing_save(*args, **kwargs):
        raise OSError(code, "simulated")

    monkeypatch.setattr(ckpt, "save_file", failing_save)
    with pytest.raises(SaveError) as err:
        run.save(tmp_path, 2)
    assert f"errno {code}" in str(err.value) and "resume_from_checkpoint latest" in str(err.value)
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)] == ["checkpoint-1"]


def test_a_real_write_failure_inside_safetensors_or_torch_is_recognised(tmp_path):
    """The file-size limit makes the operating system refuse the write, as a full disk would."""
    run = _saved(tmp_path, 1)
    before = {p.name: p.read_bytes() for p in (tmp_path / "checkpoint-1").iterdir()}
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        with pytest.raises(SaveError, match="File too large") as err:
            run.save(tmp_path, 2)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert "checkpoint-1 is intact" in str(err.value)
    assert {p.name: p.read_bytes() for p in (tmp_path / "checkpoint-1").iterdir()} == before
    assert not (tmp_path / ".checkpoint-2.tmp").exists()


def test_os_errors_are_found_behind_library_exceptions():
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as inner:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos") from inner
    except RuntimeError as outer:
        assert os_error_of(outer).errno == errno.ENOSPC
    rust = Exception("Error while serializing: I/O error: No space left (os error 28)")
    assert os_error_of(rust).errno == errno.ENOSPC
    assert os_error_of(ValueError("a bug")) is None


def test_resaving_a_step_replaces_it_whole(tmp_path):
    run = _saved(tmp_path, 2)
    run.step()
    run.save(tmp_path, 2)  # e.g. resumed from checkpoint-1 and reached step 2 again
    state = ckpt.verify(tmp_path / "checkpoint-2")
    assert state.step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-1", "checkpoint-2"]


def test_latest_ignores_checkpoints_of_an_earlier_run(tmp_path):
    _saved(tmp_path, 3, run_id="old")
    ckpt.claim_run(tmp_path, "new")
    with pytest.raises(ConfigError, match="3 checkpoint\\(s\\) of an earlier run ignored"):
        ckpt.resolve_resume(tmp_path, "latest")
    Run().save(tmp_path, 1, run_id="new", limit=1)
    assert ckpt.resolve_resume(tmp_path, "latest") == tmp_path / "checkpoint-1"
    # rotation counts only this run's checkpoints: the old run's stay for the user to judge
    assert [p.name for p in ckpt.checkpoint_dirs(tmp_path)] == [
        "checkpoint-1",
        "checkpoint-2",
        "checkpoint-3",
    ]
    assert ckpt.resolve_resume(tmp_path, "checkpoint-3") == tmp_path / "checkpoint-3"


def _flip_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:10])
