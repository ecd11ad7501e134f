"""Which stage two `--validation_refiner DIR` offers: the newer of a finished folder and
the newest complete checkpoint of the run training there."""

from __future__ import annotations

import json
from pathlib import Path

from expertune.evaluate.refiner_source import pick_refiner


def checkpoint(out: Path, step: int, complete: bool = True) -> Path:
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "state.json").write_text(json.dumps({"step": step, "run_id": ""}))
    if complete:
        (folder / "COMPLETE").write_text("{}")
    return folder


def finished(out: Path, steps: int | None) -> None:
    (out / "unet").mkdir(parents=True, exist_ok=True)
    (out / "model_index.json").write_text("{}")
    if steps is not None:
        (out / "expertune.json").write_text(json.dumps({"steps": steps}))


def test_missing_or_empty_folders_give_a_note(tmp_path):
    assert "does not exist" in pick_refiner(tmp_path / "nope")
    assert "neither a finished pipeline" in pick_refiner(tmp_path)
    checkpoint(tmp_path, 3, complete=False)
    assert isinstance(pick_refiner(tmp_path), str)


def test_a_refiner_in_training_is_read_from_its_newest_complete_checkpoint(tmp_path):
    checkpoint(tmp_path, 2)
    checkpoint(tmp_path, 4)
    checkpoint(tmp_path, 6, complete=False)
    picked = pick_refiner(tmp_path)
    assert picked.kind == "checkpoint" and picked.path.name == "checkpoint-4"


def test_the_newer_of_finished_folder_and_checkpoint_wins(tmp_path):
    finished(tmp_path, steps=4)
    checkpoint(tmp_path, 4)
    assert pick_refiner(tmp_path).kind == "folder"
    checkpoint(tmp_path, 6)  # resumed and trained on
    assert pick_refiner(tmp_path).path.name == "checkpoint-6"


def test_a_folder_expertune_did_not_train_is_used_as_is(tmp_path):
    finished(tmp_path, steps=None)
    checkpoint(tmp_path, 100)
    assert pick_refiner(tmp_path).kind == "folder"
