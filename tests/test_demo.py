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
    for name in ("data", "eval", "cache", "config", "stage1", "stage2", "single"):
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
    # Both experts start from the pretrained parent and learn shapes it never drew.
    assert s1.pretrained_model_name_or_path == s2.pretrained_model_name_or_path
    assert s1.pretrained_model_name_or_path == "expertune/tiny-sdxl-shapes"
    assert s1.prediction_type == "epsilon"  # the seed's optional reparameterisation is off
    captions = [p.read_text() for p in (work / "data").glob("*.txt")]
    assert captions and all(" diamond " in c or " plus " in c for c in captions)
    # The prompt-colour accuracy sits beside eval loss in the reports.
    assert "Prompt-colour accuracy" in (work / "stage1/report.html").read_text()
    manifest = json.loads((work / "stage2/validation/step-4/validation.json").read_text())
    assert manifest["colour"]["dataset"]["count"] >= 1
