"""`expertune demo` leaves the work dir the README promises, with real numbers in it."""

from __future__ import annotations

import json

import pytest

from expertune.cli import main
from expertune.config import load_config

pytestmark = pytest.mark.slow


def test_demo_runs_the_seed_workflow(tmp_path):
    work = tmp_path / "demo"
    assert main(["demo", "--workdir", str(work), "--steps", "4"]) == 0
    for name in ("tiny-model", "data", "eval", "cache", "config", "stage1", "stage2", "single"):
        assert (work / name).is_dir(), name
    assert (work / "demo.png").is_file()
    stage2 = json.loads((work / "stage2/run_summary.json").read_text())
    assert stage2["encoder_forward_passes"] == 0
    # The configs the demo writes are real, copyable files in the seed's format.
    s1 = load_config(str(work / "config/stage1.env"))
    s2 = load_config(str(work / "config/stage2.env"))
    assert s1.expert_band() == (350, 999) and s2.expert_band() == (0, 349)
    assert s2.validation_using_datasets and not s2.refiner_training_invert_schedule
    comparison = json.loads((work / "eval-loss/eval_loss.json").read_text())
    assert [row["band"] for row in comparison["bands"]] == [[350, 999], [0, 349]]
    assert all(row["expert_loss"] > 0 and row["baseline_loss"] > 0 for row in comparison["bands"])
    for stage in ("stage1", "stage2"):
        assert (work / stage / "report.html").is_file()
