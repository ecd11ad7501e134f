"""The final pipeline is published with one rename: OUTPUT_DIR holds the previous complete
pipeline or the new one, never a mix, and plain diffusers loads it."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from expertune.train import publish as pub


def _writer(model: Path, tag: str, fail_after: str | None = None):
    """Fill a version folder with the tiny pipeline and a tag file; optionally crash midway."""

    def write(folder: Path) -> None:
        for entry in sorted(model.iterdir()):
            if entry.name == fail_after:
                raise OSError(28, "No space left on device")
            if entry.is_dir():
                shutil.copytree(entry, folder / entry.name)
            else:
                shutil.copy2(entry, folder / entry.name)
        (folder / "expertune.json").write_text(json.dumps({"tag": tag}))

    return write


def _tree(out: Path) -> dict[str, str]:
    """What a reader sees through OUTPUT_DIR's entries (links followed), checkpoints aside."""
    seen = {}
    for entry in sorted(out.iterdir()):
        if entry.name.startswith("."):
            continue
        paths = sorted(p for p in entry.rglob("*") if p.is_file()) if entry.is_dir() else [entry]
        for p in paths:
            rel = entry.name + str(p)[len(str(entry)) :]
            seen[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return seen


def test_a_published_pipeline_loads_with_plain_diffusers(tiny_model_dir, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    out = tmp_path / "out"
    out.mkdir()
    version = pub.publish(out, _writer(tiny_model_dir, "v1"))
    assert pub.current_version(out) == version.resolve()
    assert os.readlink(out / "unet") == ".pipeline/current/unet"
    pipe = StableDiffusionXLPipeline.from_pretrained(out, add_watermarker=False)
    assert pipe.unet.config.addition_embed_type == "text_time"
    assert json.loads((out / "expertune.json").read_text()) == {"tag": "v1"}


def test_a_failed_publish_leaves_the_previous_pipeline_byte_identical(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    pub.publish(out, _writer(tiny_model_dir, "v1"))
    before = _tree(out)
    with pytest.raises(OSError, match="No space"):
        pub.publish(out, _writer(tiny_model_dir, "v2", fail_after="unet"))
    assert _tree(out) == before
    assert sorted(p.name for p in (out / ".pipeline").iterdir()) == ["current", "v000001"]
    pub.publish(out, _writer(tiny_model_dir, "v3"))
    assert json.loads((out / "expertune.json").read_text()) == {"tag": "v3"}
    assert sorted(p.name for p in (out / ".pipeline").iterdir()) == ["current", "v000002"]


def test_a_crash_after_the_switch_leaves_the_new_pipeline_and_a_leftover_the_next_publish_drops(
    tiny_model_dir, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    out.mkdir()
    pub.publish(out, _writer(tiny_model_dir, "v1"))

    def crash(out):
        raise KeyboardInterrupt  # killed right after the switch, before the old version went

    monkeypatch.setattr(pub, "_drop_dangling_links", crash)
    with pytest.raises(KeyboardInterrupt):
        pub.publish(out, _writer(tiny_model_dir, "v2"))
    assert json.loads((out / "expertune.json").read_text()) == {"tag": "v2"}
    assert (out / ".pipeline" / "v000001").is_dir()  # the leftover
    monkeypatch.undo()
    pub.publish(out, _writer(tiny_model_dir, "v3"))
    assert sorted(p.name for p in (out / ".pipeline").iterdir()) == ["current", "v000003"]


def test_a_pipeline_saved_as_real_folders_is_replaced_by_links(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(tiny_model_dir, out)  # as the foundation (or a user) saved it
    (out / "checkpoint-1").mkdir()
    pub.publish(out, _writer(tiny_model_dir, "v1"))
    assert (out / "unet").is_symlink() and (out / "model_index.json").is_symlink()
    assert (out / "checkpoint-1").is_dir()
    assert _tree(out).keys() == {
        *(k for k in _tree_of(tiny_model_dir)),
        "expertune.json",
    }
    assert sorted(p.name for p in (out / ".pipeline").iterdir()) == ["current", "v000001"]


def test_links_for_entries_a_new_version_lacks_are_removed(tiny_model_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()

    def with_lora(folder):
        _writer(tiny_model_dir, "lora")(folder)
        (folder / "pytorch_lora_weights.safetensors").write_bytes(b"lora")

    pub.publish(out, with_lora)
    assert (out / "pytorch_lora_weights.safetensors").read_bytes() == b"lora"
    pub.publish(out, _writer(tiny_model_dir, "full"))
    assert not os.path.lexists(out / "pytorch_lora_weights.safetensors")


def _tree_of(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
