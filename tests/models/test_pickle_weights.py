"""Pickle weights (.bin) load only with the user's explicit trust flag, and even then every
torch.load is forced to weights_only=True: a file that would run code is refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from expertune.errors import ModelReferenceError
from expertune.models.load import load_components, select_hub_files, weights_only_loads


class Evil:
    """Unpickling this touches a file: what a hostile .bin could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _pickled_unet(tiny_model_dir: Path, tmp_path: Path, payload) -> Path:
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    torch.save(payload, folder / "unet" / "diffusion_pytorch_model.bin")
    return folder


def test_trusted_pickle_weights_load_and_match(tiny_model_dir, tmp_path):
    weights = load_file(tiny_model_dir / "unet" / "diffusion_pytorch_model.safetensors")
    folder = _pickled_unet(tiny_model_dir, tmp_path, weights)
    with pytest.raises(ModelReferenceError, match="--allow_pickle_weights"):
        load_components(str(folder))
    parts = load_components(str(folder), allow_pickle=True)
    for name, value in parts.unet.state_dict().items():
        assert torch.equal(value, weights[name]), name


def test_a_pickle_that_runs_code_is_refused_even_when_trusted(tiny_model_dir, tmp_path):
    proof = tmp_path / "proof-it-is-hostile"
    torch.save(Evil(proof), tmp_path / "evil.bin")
    torch.load(tmp_path / "evil.bin", weights_only=False)
    assert proof.exists()  # an unsafe load really would run it

    marker = tmp_path / "ran"
    folder = _pickled_unet(tiny_model_dir, tmp_path, Evil(marker))
    with pytest.raises(ModelReferenceError, match="weights_only=True\\) refused it"):
        load_components(str(folder), allow_pickle=True)
    assert not marker.exists()


def test_weights_only_is_forced_whatever_the_caller_or_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "ran"
    torch.save(Evil(marker), tmp_path / "evil.bin")
    with weights_only_loads(), pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "evil.bin", weights_only=False)
    assert not marker.exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_hub_downloads_pickles_only_when_trusted_and_only_where_needed():
    files = [
        "model_index.json",
        "unet/diffusion_pytorch_model.safetensors",
        "unet/diffusion_pytorch_model.bin",
        "vae/diffusion_pytorch_model.bin",
    ]
    assert "vae/diffusion_pytorch_model.bin" not in select_hub_files(files)
    trusted = select_hub_files(files, allow_pickle=True)
    assert "vae/diffusion_pytorch_model.bin" in trusted
    assert "unet/diffusion_pytorch_model.bin" not in trusted
