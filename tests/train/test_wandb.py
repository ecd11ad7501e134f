"""--report_to=wandb with tracker_project_name / tracker_run_name: offline without a key
or network (said in the log), every flushed step logged to the run."""

from __future__ import annotations

import json
import logging

import pytest

from expertune.cli import main
from expertune.train import wandb_log

pytestmark = pytest.mark.slow


def test_offline_without_a_key(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", "/nonexistent")
    monkeypatch.setenv("HOME", "/nonexistent")
    assert wandb_log.choose_mode() == ("offline", "no W&B API key is configured")


def test_training_logs_every_step_to_an_offline_run(tmp_path, train_ws, monkeypatch, caplog):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: no key
    logged = []
    real_log = wandb_log.WandbTracker.log

    def spy(self, record):  # records what reached the real wandb run's log()
        logged.append(record["step"])
        real_log(self, record)

    monkeypatch.setattr(wandb_log.WandbTracker, "log", spy)
    work = train_ws
    out = tmp_path / "out"
    flags = ["--report_to=wandb", "--tracker_project_name=proj", "--tracker_run_name=first"]
    with caplog.at_level(logging.INFO):
        env = str(work / "config/stage1.env")
        assert (
            main(["train", "--config", env, f"--output_dir={out}", "--max_train_steps=3", *flags])
            == 0
        )
    assert "wandb: no W&B API key is configured, logging offline to" in caplog.text
    assert logged == [1, 2, 3]
    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    assert runs[0].name.endswith(run_id)
