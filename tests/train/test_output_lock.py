"""One training run per OUTPUT_DIR: a second one is refused in one line naming the first."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from train_support import metrics, train_args

from expertune.cli import main
from expertune.errors import ConfigError
from expertune.train.output_lock import INFO_FILE, LOCK_FILE, hold_output_lock


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    out = tmp_path / "out"
    with hold_output_lock(out):
        info = json.loads((out / INFO_FILE).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(ConfigError) as refused, hold_output_lock(out):
            pass
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(refused.value)
        assert "wait for it to finish or set another OUTPUT_DIR" in str(refused.value)
    assert not (out / LOCK_FILE).exists() and not (out / INFO_FILE).exists()
    with hold_output_lock(out):  # free again once the first is done
        pass


def test_other_processes_of_a_run_do_not_take_the_lock(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with hold_output_lock(out):
        monkeypatch.setenv("RANK", "1")
        with hold_output_lock(out):  # rank 1 shares rank 0's run
            pass


@pytest.mark.slow
def test_a_second_run_on_a_running_output_dir_is_refused(train_ws, tmp_path, capsys):
    out = tmp_path / "out"
    args = train_args(train_ws, out, "--max_train_steps=100000", "--logging_steps=1")
    first = subprocess.Popen(
        [sys.executable, "-m", "expertune.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 300
        while not ((out / "metrics.jsonl").is_file() and metrics(out)):
            assert first.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        before = (out / "metrics.jsonl").read_text()
        assert main(train_args(train_ws, out, "--max_train_steps=2")) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"in use by another training run (pid {first.pid}" in err[0]
        assert (out / "metrics.jsonl").read_text().startswith(before)
    finally:
        first.kill()
        first.wait()
