"""Loading local and hub models, and the one-line errors for everything that cannot load."""

from __future__ import annotations

import json
import shutil
import time

import pytest
import torch

from expertune.errors import ModelReferenceError
from expertune.models.load import load_components, resolve_model_path, select_hub_files


def test_loads_the_tiny_model(tiny_model_dir, capfd):
    parts = load_components(str(tiny_model_dir))
    assert capfd.readouterr().err == ""  # no progress bars: stderr is for one-line errors
    assert parts.model_path == tiny_model_dir.resolve() and parts.family == "sdxl"
    assert parts.unet.config.addition_embed_type == "text_time"
    assert parts.text_encoder.config.hidden_size + parts.text_encoder_2.config.hidden_size == 64
    assert parts.tokenizer_2.pad_token == "!"
    assert parts.scheduler_config["_class_name"] == "EulerDiscreteScheduler"
    assert parts.vae.dtype == torch.float32


def test_loads_in_another_dtype(tiny_model_dir):
    parts = load_components(str(tiny_model_dir), dtype=torch.bfloat16)
    assert parts.unet.dtype == parts.vae.dtype == parts.text_encoder_2.dtype == torch.bfloat16


def _copy(tiny_model_dir, tmp_path, name="model"):
    return shutil.copytree(tiny_model_dir, tmp_path / name)


def _edit_index(folder, **changes):
    index = json.loads((folder / "model_index.json").read_text())
    index.update(changes)
    (folder / "model_index.json").write_text(json.dumps(index))


def test_loads_a_refiner_layout(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path)
    shutil.rmtree(folder / "text_encoder")
    shutil.rmtree(folder / "tokenizer")
    _edit_index(
        folder,
        _class_name="StableDiffusionXLImg2ImgPipeline",
        text_encoder=[None, None],
        tokenizer=[None, None],
        requires_aesthetics_score=True,
    )
    parts = load_components(str(folder), family="sdxl-refiner")
    assert parts.text_encoder is None and parts.tokenizer is None
    assert parts.text_encoder_2 is not None
    with pytest.raises(ModelReferenceError, match="family 'sdxl-refiner', but family 'sdxl'"):
        load_components(str(folder))


def _one_line_error(name, *, load=load_components, **kwargs):
    """The ModelReferenceError that `load(name, **kwargs)` raises; checks it is one quick line."""
    start = time.monotonic()
    with pytest.raises(ModelReferenceError) as err:
        load(name, **kwargs)
    assert time.monotonic() - start < 10  # guards against hub retries, generously
    message = str(err.value)
    assert "\n" not in message and repr(name) in message
    return message


def test_missing_path(tmp_path):
    assert "does not exist" in _one_line_error(str(tmp_path / "nowhere"))


def test_folder_without_model_index(tmp_path):
    (tmp_path / "unet").mkdir()
    assert "no model_index.json" in _one_line_error(str(tmp_path))


@pytest.mark.parametrize("found", ["StableDiffusionPipeline", "FluxPipeline"])
def test_other_family(tiny_model_dir, tmp_path, found):
    folder = _copy(tiny_model_dir, tmp_path)
    _edit_index(folder, _class_name=found)
    message = _one_line_error(str(folder))
    assert found in message and "StableDiffusionXLPipeline" in message


@pytest.mark.parametrize("suffix", [".safetensors", ".ckpt"])
def test_single_file(tmp_path, suffix):
    file = tmp_path / f"sd_xl_base_1.0{suffix}"
    file.write_bytes(b"not read")
    message = _one_line_error(str(file))
    assert (
        "single-file" in message and "not implemented" in message and "diffusers folder" in message
    )


def test_pickle_only_weights_are_refused(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"never unpickled")
    message = _one_line_error(str(folder))
    assert "unet/" in message and "pickle" in message and "safetensors" in message


def test_hub_name_offline(tmp_path):
    message = _one_line_error(
        "segmind/SSD-1B", load=resolve_model_path, offline=True, cache_dir=tmp_path
    )
    assert "could not be reached" in message and "local diffusers folder" in message


def test_hub_name_unreachable_fails_fast(tmp_path):
    # Offline machines fail the probe; online ones get a 404 for this repo. Both are one line.
    name = "expertune-tests/no-such-model-4f1c"
    message = _one_line_error(
        name, load=resolve_model_path, offline=False, cache_dir=tmp_path, probe_timeout=2.0
    )
    assert "Hugging Face hub" in message


def test_hub_name_found_in_the_local_cache(tiny_model_dir, tmp_path):
    repo = tmp_path / "models--someone--tiny-sdxl"
    commit = "0" * 40
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    path = resolve_model_path("someone/tiny-sdxl", offline=True, cache_dir=tmp_path)
    assert path == repo / "snapshots" / commit


def test_hub_downloads_only_safetensors_diffusers_files():
    files = [
        "model_index.json",
        "sd_xl_base_1.0.safetensors",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "text_encoder/model.onnx",
        "tokenizer/vocab.json",
    ]
    assert select_hub_files(files) == [
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.fp16.safetensors",
        "tokenizer/vocab.json",
    ]


def test_a_name_that_is_neither_path_nor_hub_id(tmp_path):
    assert "does not exist" in _one_line_error("./models/no--such")
    assert "does not exist" in _one_line_error("a/b/c/d")


def test_broken_component(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path)
    (folder / "vae" / "config.json").write_text("{not json")
    assert "vae/ could not be loaded" in _one_line_error(str(folder))


def test_scheduler_config_is_missing(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path)
    shutil.rmtree(folder / "scheduler")
    assert "scheduler" in _one_line_error(str(folder))


def test_cached_hub_repo_that_is_not_a_diffusers_model(tmp_path):
    snapshot = tmp_path / "models--someone--single-file" / "snapshots" / ("1" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("1" * 40)
    message = _one_line_error(
        "someone/single-file", load=resolve_model_path, offline=True, cache_dir=tmp_path
    )
    assert "no model_index.json" in message
