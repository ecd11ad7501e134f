"""Encoder fingerprints: equal exactly when weights (and config) are equal."""

from __future__ import annotations

import torch
from transformers import CLIPTextModelWithProjection

from expertune.models.load import fingerprint, load_components


def test_equal_weights_equal_fingerprints(tiny_model_dir):
    a, b = load_components(str(tiny_model_dir)), load_components(str(tiny_model_dir))
    assert a.vae is not b.vae
    assert fingerprint(a.vae) == fingerprint(b.vae)
    assert fingerprint(a.text_encoder_2) == fingerprint(b.text_encoder_2)
    assert fingerprint(a.text_encoder) != fingerprint(a.text_encoder_2)
    assert len(fingerprint(a.vae)) == 32 and int(fingerprint(a.vae), 16) >= 0


def test_the_folder_does_not_matter(tiny_model_dir, tmp_path):
    original = CLIPTextModelWithProjection.from_pretrained(tiny_model_dir / "text_encoder_2")
    original.save_pretrained(tmp_path / "elsewhere")
    copy = CLIPTextModelWithProjection.from_pretrained(tmp_path / "elsewhere")
    assert fingerprint(original) == fingerprint(copy)


def test_any_weight_change_changes_the_fingerprint(tiny_model_dir):
    vae = load_components(str(tiny_model_dir)).vae
    before = fingerprint(vae)
    with torch.no_grad():
        vae.encoder.conv_in.bias[0] += 1e-6
    assert fingerprint(vae) != before


def test_dtype_and_config_count(tiny_model_dir):
    vae = load_components(str(tiny_model_dir)).vae
    before = fingerprint(vae)
    assert fingerprint(vae.to(torch.bfloat16)) != before
    vae.to(torch.float32)
    vae.register_to_config(scaling_factor=0.5)  # latents scale differently
    assert fingerprint(vae) != before
