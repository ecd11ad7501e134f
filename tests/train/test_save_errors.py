"""A full disk while saving: one line naming what failed, and the earlier checkpoint or
pipeline exactly as it was."""

from __future__ import annotations

import errno
import hashlib

from train_support import train_args

from expertune.cli import main
from expertune.train import checkpoint as ckpt
from expertune.train import publish


def _disk_full_on(monkeypatch, module, name: str, nth: int) -> None:
    """Make the `nth` call of `module.name` fail as a full disk would."""
    real, calls = getattr(module, name), {"n": 0}

    def failing(*args):
        calls["n"] += 1
        if calls["n"] == nth:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    monkeypatch.setattr(module, name, failing)


def _digests(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_disk_full_during_a_checkpoint(train_ws, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    _disk_full_on(monkeypatch, ckpt, "_seal", nth=2)
    code = main(train_args(train_ws, out, "--max_train_steps=6", "--checkpointing_steps=2"))
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2
    assert last.startswith("expertune: save failed: could not write checkpoint-4 in ")
    assert "No space left on device" in last and "checkpoint-2 is intact" in last
    assert "Free disk space" in last
    assert [p.name for p in ckpt.checkpoint_dirs(out)] == ["checkpoint-2"]
    ckpt.verify(out / "checkpoint-2")
    assert not (out / ".checkpoint-4.tmp").exists()


def test_disk_full_at_the_first_checkpoint_advises_running_again(
    train_ws, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    _disk_full_on(monkeypatch, ckpt, "_seal", nth=1)
    code = main(train_args(train_ws, out, "--max_train_steps=4", "--checkpointing_steps=2"))
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "could not write checkpoint-2" in last
    assert "no earlier checkpoint exists" in last
    assert "run the same command again (no checkpoint exists yet" in last
    assert "--resume_from_checkpoint latest" not in last  # it would fail: nothing to resume
    assert ckpt.checkpoint_dirs(out) == []


def test_disk_full_while_publishing_keeps_the_previous_pipeline(
    train_ws, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "out"
    assert main(train_args(train_ws, out, "--max_train_steps=2")) == 0
    unet = out / "unet" / "diffusion_pytorch_model.safetensors"
    before = hashlib.sha256(unet.read_bytes()).hexdigest()
    version = publish.current_version(out)
    capsys.readouterr()
    _disk_full_on(monkeypatch, publish, "fsync_tree", nth=1)
    assert main(train_args(train_ws, out, "--max_train_steps=3", "--learning_rate=1e-3")) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "could not write the final pipeline" in last and "previous pipeline" in last
    assert "checkpoint-3 holds the trained weights" in last
    assert publish.current_version(out) == version
    assert hashlib.sha256(unet.read_bytes()).hexdigest() == before
    assert _digests(version) == _digests(out / ".pipeline" / "current")
    ckpt.verify(out / "checkpoint-3")
