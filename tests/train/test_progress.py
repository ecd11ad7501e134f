"""Progress in a log file: one line per metrics flush, no carriage-return bar fragments."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from expertune.train.progress import LineProgress, make_progress


def test_line_progress_prints_one_line_per_flush_and_the_end():
    out = io.StringIO()
    bar = make_progress(5, 0, "train 0..999", enabled=True, every=2, stream=out)
    assert isinstance(bar, LineProgress)
    for _ in range(5):
        bar.update(1)
        bar.set_postfix(loss="0.1000", lr="1.00e-04")  # a flush after every step
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split(" loss")[0].split(" elapsed")[0] for line in lines] == [
        "train 0..999: step 2/5 (40%)",
        "train 0..999: step 4/5 (80%)",
        "train 0..999: step 5/5 (100%)",
    ]
    assert "loss 0.1000 lr 1.00e-04" in lines[0] and "eta" in lines[0]


def test_disabled_prints_nothing():
    out = io.StringIO()
    bar = make_progress(3, 0, "x", enabled=False, stream=out)
    bar.update(3)
    bar.set_postfix(loss="1")
    bar.close()
    assert out.getvalue() == ""


@pytest.mark.slow
def test_train_into_a_log_file_leaves_whole_lines(tmp_path, train_ws):
    import expertune

    work = train_ws
    log = tmp_path / "train.log"
    src = str(Path(expertune.__file__).parents[1])
    with log.open("w") as fh:
        code = subprocess.run(
            [sys.executable, "-m", "expertune.cli", "train", "--config",
             str(work / "config/stage1.env"), f"--output_dir={tmp_path / 'out'}",
             "--max_train_steps=4", "--logging_steps=2"],
            stdout=fh, stderr=subprocess.STDOUT, env={"PYTHONPATH": src, "PATH": ""},
        ).returncode  # fmt: skip
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert "\r" not in text
    steps = [line for line in text.splitlines() if ": step " in line]
    assert [s.split(": ")[1].split(" (")[0] for s in steps] == ["step 2/4", "step 4/4"]
