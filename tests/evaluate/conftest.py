"""Shared fixtures for the evaluation tests: a tiny CLIP model saved offline, the seed's
two-expert workspace on the tiny SDXL model, and real cached-sample tensors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from expertune.cli import main

STEPS = 2  # training steps of the workspace's runs


def build_tiny_clip(folder: Path) -> Path:
    """A random CLIPModel (32-px images) and a CLIPProcessor using the tiny tokenizer."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from expertune.models.tokenizer import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 32,
        "patch_size": 8,
    }
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    model.save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip")


@pytest.fixture(scope="session")
def workspace(tmp_path_factory) -> Path:
    """The demo's layout: tiny model, 6 captioned images, stage1.env and stage2.env."""
    from expertune.app.demo import prepare_workdir

    work = tmp_path_factory.mktemp("evaluate-work")
    prepare_workdir(work, STEPS, images=6, size=64)
    return work


def _train(work: Path, stage: str, out: Path, *flags: str) -> Path:
    config = str(work / "config" / f"{stage}.env")
    assert main(["train", "--config", config, f"--output_dir={out}", *flags]) == 0
    return out


@pytest.fixture(scope="session")
def train():
    """train(work, "stage1" | "stage2", out, *flags): `expertune train` into `out`."""
    return _train


@pytest.fixture(scope="session")
def refiner_dir(workspace) -> Path:
    """A finished stage two (the refiner) trained for STEPS steps, validated on its data."""
    return _train(workspace, "stage2", workspace / "stage2")


@pytest.fixture(scope="session")
def tiny_parts(tiny_model_dir):
    """The tiny model's UNet, VAE and the seed's v-prediction zero-SNR training scheduler."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from expertune.models.load import read_scheduler_config
    from expertune.schedule.noise import Parameterisation, training_scheduler

    unet = UNet2DConditionModel.from_pretrained(tiny_model_dir / "unet").eval()
    vae = AutoencoderKL.from_pretrained(tiny_model_dir / "vae").eval()
    param = Parameterisation("v_prediction", True, "trailing")
    scheduler = training_scheduler(read_scheduler_config(tiny_model_dir, "tiny"), param)
    return unet, vae, scheduler


@pytest.fixture(scope="session")
def fake_sample():
    """fake_sample(seed) -> a cached sample's tensors with the tiny model's shapes."""
    return _fake_sample


def _fake_sample(seed: int, size: int = 8) -> dict[str, torch.Tensor]:
    """A cached sample's tensors with the tiny model's shapes (latents are unit Gaussian)."""
    g = torch.Generator().manual_seed(seed)
    return {
        "latents": torch.randn(4, size, size, generator=g),
        "prompt_embeds": torch.randn(77, 64, generator=g),
        "pooled_prompt_embeds": torch.randn(32, generator=g),
        "time_ids": torch.tensor([64.0, 64.0, 0.0, 0.0, 64.0, 64.0]),
    }
