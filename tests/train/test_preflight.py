"""Preflight checks that need a file system state the test user cannot make (root reads
everything), so os.access is told what a second, unprivileged user would see."""

from __future__ import annotations

import os

import pytest

from expertune.config import load_config
from expertune.errors import ConfigError


def _read_only(monkeypatch, folder) -> None:
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if str(p) == str(folder) else real(p, mode)
    )


def test_an_empty_read_only_cache_is_refused_before_the_model_loads(
    train_ws, tmp_path, monkeypatch
):
    from expertune.train.preflight import check_caches

    cache = tmp_path / "cache"
    cache.mkdir()
    cfg = load_config(
        str(train_ws / "config" / "stage1.env"),
        [
            "--data_backend_config=",
            f"--instance_data_dir={train_ws / 'data'}",
            f"--cache_dir={cache}",
        ],
    )
    _read_only(monkeypatch, cache)
    with pytest.raises(ConfigError, match="is empty and not writable"):
        check_caches(cfg)
    (cache / "latents" / "ab").mkdir(parents=True)
    (cache / "latents" / "ab" / f"ab{'0' * 62}.safetensors").write_bytes(b"entry")
    check_caches(cfg)  # a read-only warm cache is read, never written: fine


def test_an_output_dir_that_cannot_be_written_is_refused(tmp_path, monkeypatch):
    from expertune.train.preflight import check_output_dir

    _read_only(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="is not writable"):
        check_output_dir(tmp_path / "out")


def test_a_refused_resume_leaves_metrics_of_the_earlier_run(train_ws, tmp_path, capsys):
    from train_support import train_args

    from expertune.cli import main

    out = tmp_path / "out"
    assert main(train_args(train_ws, out, "--max_train_steps=4", "--checkpointing_steps=2")) == 0
    before = (out / "metrics.jsonl").read_bytes()
    assert len(before.splitlines()) == 4
    capsys.readouterr()
    resume = ("--resume_from_checkpoint=checkpoint-2", "--max_train_steps=4")
    assert main(train_args(train_ws, out, *resume, "--train_batch_size=3")) == 2
    assert "not a whole number of batches of 3" in capsys.readouterr().err
    assert (out / "metrics.jsonl").read_bytes() == before  # steps 3 and 4 are still there
