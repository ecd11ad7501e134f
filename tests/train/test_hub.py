"""--push_to_hub: an unusable hub is one line (exit 2) before training; the upload sends
the published files with a model card stating band and parameterisation.

No hub exists here: the upload test records HfApi's calls (the one stand-in these tests
use); the unreachable test points huggingface_hub at a closed local port."""

from __future__ import annotations

from pathlib import Path

import pytest

from expertune.cli import main

pytestmark = pytest.mark.slow

HUB = ["--push_to_hub", "--hub_model_id=me/expert"]


@pytest.fixture
def work(train_ws):
    """The session's training workspace (tests/train/conftest.py)."""
    return train_ws


def _train(work, out, *flags):
    return main(
        ["train", "--config", str(work / "config/stage1.env"), f"--output_dir={out}", *flags]
    )


def test_unreachable_hub_stops_before_training(work, tmp_path, monkeypatch, capsys):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    out = tmp_path / "out"
    assert _train(work, out, "--max_train_steps=2", *HUB) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--push_to_hub: the hub at http://127.0.0.1:9 cannot be used" in err[0]
    assert not out.exists()


def test_upload_sends_the_published_expert_and_checkpoints(work, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = []
    monkeypatch.setattr(HfApi, "whoami", lambda self, *a, **k: {"name": "me"})
    monkeypatch.setattr(
        HfApi, "create_repo", lambda self, repo_id, **k: calls.append(("repo", repo_id))
    )

    def upload_folder(self, *, repo_id, folder_path, path_in_repo=None, **k):
        from pathlib import Path

        sent = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*"))
        calls.append(("upload", repo_id, path_in_repo, sent))

    def create_commit(self, *, repo_id, operations, **k):
        for op in operations:
            assert Path(op.path_or_fileobj).is_file()
        calls.append(("upload", repo_id, None, sorted(op.path_in_repo for op in operations)))

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    out = tmp_path / "out"
    flags = ["--max_train_steps=2", "--checkpointing_steps=1", *HUB, "--push_checkpoints_to_hub"]
    assert _train(work, out, *flags) == 0
    uploads = [c for c in calls if c[0] == "upload"]
    assert [c[2] for c in uploads] == ["checkpoint-1", "checkpoint-2", None]
    assert all(c[1] == "me/expert" for c in uploads)
    final = uploads[-1][3]
    assert {"README.md", "model_index.json", "expertune.json"} <= set(final)
    assert "unet/diffusion_pytorch_model.safetensors" in final
    assert not [f for f in final if f.startswith(("checkpoint-", "logs/", "wandb/"))]
    card = (out / "README.md").read_text()
    assert "- band: timesteps 350..999 of 1000 (inclusive)" in card
    assert "prediction_type=v_prediction" in card and "base model: " in card
