"""Cache keys: sha256 of everything an entry depends on.

A latent entry depends on the VAE (its fingerprint: weights and config), the whole
resize-and-crop plan and the image's bytes; a text entry on both text encoders and both
tokenizers (one fingerprint; the refiner layout, with no first encoder, gets its own) and
the caption. `*_FORMAT` names what is stored; bump it when that changes.
"""

from __future__ import annotations

import json

from expertune.data.cache import cache_key
from expertune.data.images import PREPROCESS_VERSION, CropPlan

LATENTS, TEXT = "latents", "text"
LATENT_FORMAT = "sdxl-latent-mode-scaled-v2"
TEXT_FORMAT = "sdxl-text-penultimate-pooled-v1"
_CALL_STATE = ("truncation", "padding")  # set by each tokenizer call, not identity


def latent_key(vae_fingerprint: str, image_digest: str, plan: CropPlan) -> str:
    """Key of one image's latents: encoder, preprocessing (the whole crop plan), bytes."""
    geometry = json.dumps([plan.original, plan.resized, plan.top, plan.left, plan.target])
    return cache_key(
        LATENTS, LATENT_FORMAT, PREPROCESS_VERSION, vae_fingerprint, image_digest, geometry
    )


def text_key(text_fingerprint: str, caption: str) -> str:
    """Key of one caption's embeddings: the encoders' and tokenizers' fingerprint, caption."""
    return cache_key(TEXT, TEXT_FORMAT, text_fingerprint, caption)


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of what decides a tokenizer's ids: its model, normaliser and splitting (not
    the padding/truncation state a call leaves behind), max length and pad token."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = {k: v for k, v in json.loads(backend.to_str()).items() if k not in _CALL_STATE}
        body = json.dumps(spec, sort_keys=True)
    else:
        body = repr(sorted(tokenizer.get_vocab().items()))
    return cache_key(
        type(tokenizer).__name__, body, str(tokenizer.model_max_length), str(tokenizer.pad_token)
    )


def text_encoders_fingerprint(
    text_encoder_fingerprint: str | None, text_encoder_2_fingerprint: str, tokenizer, tokenizer_2
) -> str:
    """One fingerprint for SDXL's text side: both encoders' (the caller's module hashes,
    None for the refiner layout) and both tokenizers'."""
    first = tokenizer_fingerprint(tokenizer) if tokenizer is not None else "none"
    return cache_key(
        text_encoder_fingerprint or "none",
        text_encoder_2_fingerprint,
        first,
        tokenizer_fingerprint(tokenizer_2),
    )
