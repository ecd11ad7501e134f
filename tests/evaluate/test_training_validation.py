"""Validation, eval loss and the report inside real training runs of the tiny model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from safetensors.torch import load_file

from expertune.cli import main

pytestmark = pytest.mark.slow
COMMON = ("--max_train_steps=4", "--checkpointing_steps=0", "--eval_split=0.34")


def everything(clip_dir: Path, refiner: Path) -> tuple[str, ...]:
    return (
        "--validation_steps=2",
        '--validation_prompt=["a red circle", "a blue square"]',
        "--num_validation_images=1",
        "--validation_num_inference_steps=4",
        "--validation_guidance=3",
        "--validation_using_datasets",
        "--eval_steps_interval=2",
        "--eval_timesteps=4",
        "--eval_full_range",
        "--evaluation_type=clip",
        f"--pretrained_evaluation_model_name_or_path={clip_dir}",
        f"--validation_refiner={refiner}",
    )


@pytest.fixture(scope="module")
def runs(workspace, train, tiny_clip_dir, refiner_dir, tmp_path_factory) -> dict[str, Path]:
    """Stage one trained twice from the same seed: with every evaluation on, and with none."""
    root = tmp_path_factory.mktemp("runs")
    on = train(workspace, "stage1", root / "on", *COMMON, *everything(tiny_clip_dir, refiner_dir))
    off = train(workspace, "stage1", root / "off", *COMMON)
    return {"on": on, "off": off}


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_validation_and_eval_never_change_training(runs):
    on = load_file(runs["on"] / "unet" / "diffusion_pytorch_model.safetensors")
    off = load_file(runs["off"] / "unet" / "diffusion_pytorch_model.safetensors")
    assert on.keys() == off.keys()
    assert all(on[k].equal(off[k]) for k in on)
    train_on = [r for r in records(runs["on"]) if "kind" not in r]
    train_off = records(runs["off"])
    assert [r["loss"] for r in train_on] == [r["loss"] for r in train_off]
    assert not (runs["off"] / "validation").exists()


def test_validation_images_land_per_step_with_scores(runs):
    for step in (2, 4):
        folder = runs["on"] / "validation" / f"step-{step}"
        manifest = json.loads((folder / "validation.json").read_text())
        kinds = [e["kind"] for e in manifest["images"]]
        assert kinds.count("expert") == 2 and kinds.count("chain") == 2
        assert kinds.count("dataset") == 1
        assert all((folder / e["file"]).is_file() for e in manifest["images"])
        assert set(manifest["clip"]) == {"expert", "chain", "dataset"}
        for stats in manifest["clip"].values():
            assert 0 <= stats["min"] <= stats["mean"] <= stats["max"] <= 100
        datasets = [e for e in manifest["images"] if e["kind"] == "dataset"]
        assert all(e["start_timestep"] == 999 and e["end_timestep"] == 350 for e in datasets)
        assert manifest["refiner"] and not manifest["notes"]
    assert any((runs["on"] / "logs").iterdir())


def test_the_refiner_validates_on_dataset_images_from_its_band_edge(refiner_dir):
    manifest = json.loads((refiner_dir / "validation" / "step-2" / "validation.json").read_text())
    datasets = [e for e in manifest["images"] if e["kind"] == "dataset"]
    assert datasets and all(e["start_timestep"] == 349 for e in datasets)
    assert all(e["end_timestep"] == 0 and e["psnr"] > 0 for e in datasets)


def test_eval_records_sit_beside_training_records(runs):
    evals = [r for r in records(runs["on"]) if r.get("kind") == "eval"]
    assert [(r["step"], r["range"]) for r in evals] == [
        (2, "band"),
        (2, "full"),
        (4, "band"),
        (4, "full"),
    ]
    band = evals[2]
    assert band["band"] == [350, 999] and band["timesteps"] == [350, 566, 783, 999]
    assert band["samples"] == 3 and len(set(band["losses"])) == 4
    assert evals[0]["losses"] != band["losses"]  # the model moved between evaluations
    assert (runs["on"] / "eval" / "loss_vs_timestep.png").is_file()


def test_the_report_renders_and_references_files_that_exist(runs, capsys):
    for out in runs.values():
        html = (out / "report.html").read_text()
        assert "<svg" in html and "Band plan" in html and "Loss" in html
        for ref in re.findall(r'(?:href|src)="([^"]+)"', html):
            assert ref.startswith("data:image/png;base64,") or (out / ref).is_file(), ref
    on = (runs["on"] / "report.html").read_text()
    assert "CLIP score" in on and "Eval loss per timestep" in on and "step 4" in on
    (runs["on"] / "report.html").unlink()
    assert main(["report", str(runs["on"])]) == 0
    assert (runs["on"] / "report.html").read_text().count("<figure>") == 4
    capsys.readouterr()


def test_report_of_a_folder_that_is_no_run_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "OUTPUT_DIR" in err[0]


def test_evaluate_command_matches_training_eval_and_covers_every_band(
    runs, refiner_dir, workspace, tmp_path, capsys
):
    data = tmp_path / "data.env"
    data.write_text(
        (workspace / "config" / "stage1.env").read_text()
        + 'export TRAINER_EXTRA_ARGS="${TRAINER_EXTRA_ARGS} --eval_split=0.34"\n'
    )
    out = tmp_path / "eval"
    argv = ["evaluate", "--experts", str(runs["on"]), str(refiner_dir)]
    argv += ["--baseline", str(workspace / "tiny-model"), "--data", str(data)]
    assert main([*argv, "--timesteps", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "eval_loss.json").read_text())
    assert [row["band"] for row in result["bands"]] == [[350, 999], [0, 349]]
    assert all(len(row["baseline_losses"]) == 4 for row in result["bands"])
    trained = [r for r in records(runs["on"]) if r.get("kind") == "eval"][2]
    assert result["bands"][0]["timesteps"] == trained["timesteps"]
    assert result["bands"][0]["expert_losses"] == pytest.approx(trained["losses"], rel=1e-5)
    assert result["samples"] == 3 and (out / "eval_loss.png").is_file()
    assert "[350, 999]" in printed and "baseline loss" in printed
