"""Small real encoders for the data tests: an 8x-downsampling AutoencoderKL and two CLIP
text encoders (different widths, so a swapped concatenation shows) with a byte-level CLIP
tokenizer written from vocab.json/merges.txt. Built in well under a second."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
MERGES = [("a", "n"), ("i", "n"), ("r", "e"), ("e", "d</w>"), ("o", "n</w>")]


def byte_alphabet() -> list[str]:
    """GPT-2/CLIP's printable stand-ins for the 256 bytes."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def write_tokenizer_files(folder: Path) -> Path:
    """vocab.json and merges.txt in CLIP's layout: bytes, bytes + </w>, merges, BOS, EOS."""
    folder.mkdir(parents=True, exist_ok=True)
    tokens = byte_alphabet() + [b + "</w>" for b in byte_alphabet()]
    tokens += [a + b for a, b in MERGES] + [BOS, EOS]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in MERGES)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@dataclass
class Encoders:
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    text_encoder_2: CLIPTextModelWithProjection
    tokenizer: CLIPTokenizer
    tokenizer_2: CLIPTokenizer

    def as_kwargs(self) -> dict:
        return dict(vars(self))


def tiny_vae(scaling_factor: float = 0.5, shift_factor: float | None = None) -> AutoencoderKL:
    torch.manual_seed(0)
    return AutoencoderKL(
        block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
    ).eval()


def tiny_text_config(tokenizer: CLIPTokenizer, hidden: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=hidden,
        bos_token_id=tokenizer.convert_tokens_to_ids(BOS),
        eos_token_id=tokenizer.convert_tokens_to_ids(EOS),
        pad_token_id=tokenizer.pad_token_id,
    )


@pytest.fixture(scope="session")
def make_vae():
    """Build the tiny VAE with a chosen scaling and shift (same weights every time)."""
    return tiny_vae


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    return write_tokenizer_files(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def encoders(tokenizer_dir) -> Encoders:
    tokenizer = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=77)
    tokenizer_2 = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=77, pad_token="!")
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(tiny_text_config(tokenizer, 32)).eval()
    text_encoder_2 = CLIPTextModelWithProjection(tiny_text_config(tokenizer_2, 48)).eval()
    return Encoders(tiny_vae(), text_encoder, text_encoder_2, tokenizer, tokenizer_2)


@pytest.fixture(scope="session")
def tiny_components(tiny_model_dir):
    """The tiny SDXL model's loaded parts (read-only: copy before changing any)."""
    from expertune.models.load import load_components

    return load_components(str(tiny_model_dir))
