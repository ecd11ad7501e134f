"""The tiny SDXL refiner: deterministic, laid out as stabilityai's refiner, and sharing the
VAE and text_encoder_2 of the tiny base of the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline

from expertune.cli import main
from expertune.models.family import SDXL_REFINER, detect_family
from expertune.models.load import load_components
from expertune.models.tiny import HIDDEN, TIME_EMBED_DIM, build_tiny_sdxl_refiner, procedural_images


@pytest.fixture(scope="module")
def refiner_dir(tmp_path_factory) -> Path:
    """The tiny refiner (seed 0, procedural calibration, like the session's tiny base)."""
    return build_tiny_sdxl_refiner(tmp_path_factory.mktemp("tiny-refiner") / "model", seed=0)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_same_seed_gives_byte_identical_folders(refiner_dir, tmp_path):
    first, second = _files(refiner_dir), _files(build_tiny_sdxl_refiner(tmp_path / "again"))
    assert first.keys() == second.keys()
    assert [n for n in first if first[n] != second[n]] == []


def test_layout_is_the_sdxl_refiners(refiner_dir):
    index = json.loads((refiner_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLImg2ImgPipeline"
    assert index["text_encoder"] == [None, None] and index["tokenizer"] == [None, None]
    assert index["requires_aesthetics_score"] is True
    assert index["force_zeros_for_empty_prompt"] is False
    assert detect_family(index) == "sdxl-refiner"
    unet = json.loads((refiner_dir / "unet" / "config.json").read_text())
    assert unet["cross_attention_dim"] == HIDDEN  # text_encoder_2's hidden states only
    assert unet["addition_time_embed_dim"] == TIME_EMBED_DIM
    assert unet["projection_class_embeddings_input_dim"] == 5 * TIME_EMBED_DIM + HIDDEN
    info = json.loads((refiner_dir / "expertune_tiny.json").read_text())
    assert info["builder"] == "build_tiny_sdxl_refiner" and info["seed"] == 0
    assert "build_tiny_sdxl_refiner(seed=0)" in (refiner_dir / "README.md").read_text()


def test_shares_vae_and_second_text_encoder_with_the_base_of_the_same_seed(
    refiner_dir, tiny_model_dir
):
    base, refiner = _files(tiny_model_dir), _files(refiner_dir)
    for part in ("vae", "text_encoder_2", "tokenizer_2", "scheduler"):
        names = [n for n in refiner if n.startswith(f"{part}/")]
        assert names and all(refiner[n] == base[n] for n in names), part
    unet = "unet/diffusion_pytorch_model.safetensors"
    assert refiner[unet] != base[unet]
    assert not any(n.startswith(("text_encoder/", "tokenizer/")) for n in refiner)


def test_loads_as_the_refiner_family_and_refines_64px(refiner_dir):
    parts = load_components(str(refiner_dir), family="sdxl-refiner")
    assert parts.text_encoder is None and parts.tokenizer is None
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(refiner_dir)
    assert pipe.config.requires_aesthetics_score and pipe.text_encoder is None
    # The pipeline builds 5 time ids ending in the aesthetic score; the UNet accepts them.
    ids, _ = pipe._get_add_time_ids(
        (64, 64), (0, 0), (64, 64), 6.0, 2.5, (64, 64), (0, 0), (64, 64), torch.float32, 32
    )
    assert ids.shape == (1, SDXL_REFINER.num_time_ids) and ids[0, -1].item() == 6.0
    image = procedural_images(1)[0]
    out = pipe("a red circle", image=image, strength=0.3, num_inference_steps=4)
    assert out.images[0].size == (64, 64)


def test_cli_builds_the_refiner(tmp_path, capsys):
    assert main(["tiny-model", str(tmp_path / "r"), "--refiner", "--seed", "3"]) == 0
    index = json.loads((tmp_path / "r" / "model_index.json").read_text())
    assert detect_family(index) == "sdxl-refiner"
    assert json.loads((tmp_path / "r" / "expertune_tiny.json").read_text())["seed"] == 3
    assert "built" in capsys.readouterr().out
