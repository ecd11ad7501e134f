"""`--resume_from_checkpoint latest` on a first run starts fresh; a resumed run says so."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from expertune.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture
def work(train_ws):
    """The session's training workspace (tests/train/conftest.py)."""
    return train_ws


def _train(work: Path, out: Path, *flags: str) -> None:
    env = str(work / "config/stage1.env")
    assert main(["train", "--config", env, f"--output_dir={out}", *flags]) == 0


def test_latest_without_checkpoint_starts_fresh_then_resumes(work, tmp_path, caplog, capsys):
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        _train(work, out, "--max_train_steps=2", "--resume_from_checkpoint=latest")
    assert f"no checkpoint in {out} yet, starting fresh" in caplog.text
    assert (
        capsys.readouterr()
        .out.strip()
        .splitlines()[-1]
        .startswith("trained 2 steps in this run in ")
    )
    caplog.clear()
    with caplog.at_level(logging.INFO):
        _train(work, out, "--max_train_steps=3", "--resume_from_checkpoint=latest")
    assert "resumed from checkpoint-2 (step 2 of 3)" in caplog.text
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("trained 1 steps in this run in ") and "(3 in total)" in last
