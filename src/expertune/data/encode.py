"""Fill the cache with VAE latents and SDXL text embeddings, counting encoder passes.

What is stored, and why:
- latents: the mean (`latent_dist.mode()`) of the VAE posterior, shifted and scaled as
  diffusers does before the UNet sees it, `(mode - shift_factor) * scaling_factor`. The
  mean is deterministic, so every job that shares the cache (stage one, stage two) trains
  on the same latents and losses are comparable; SDXL's posterior std is small enough that
  sampling it adds little. Shape (4, H/8, W/8).
- text: SDXL's conditioning exactly as `StableDiffusionXLPipeline.encode_prompt` makes it:
  `prompt_embeds` (77, hidden1 + hidden2), the penultimate hidden states of both encoders
  concatenated, and `pooled_prompt_embeds`, text_encoder_2's projected `text_embeds`. With
  no first encoder (the SDXL refiner layout) only text_encoder_2's states are used.

Keys cover everything the tensors depend on: the encoder fingerprint the caller passes
(weights, config and, for text, the tokenizers), the preprocessing and the input bytes or
caption. A build whose entries are all present runs no encoder at all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from expertune.data.cache import Cache, Tensors, cache_key
from expertune.data.images import PREPROCESS_VERSION, load_image, plan_crop, prepare, target_size
from expertune.data.local_folder import Sample
from expertune.errors import DataError

LATENTS, TEXT = "latents", "text"
LATENT_FORMAT = "sdxl-latent-mode-scaled-v1"
TEXT_FORMAT = "sdxl-text-penultimate-pooled-v1"
TimeIds = tuple[int, int, int, int, int, int]
_CALL_STATE = ("truncation", "padding")  # set by each tokenizer call, not identity


def file_digest(data: bytes) -> str:
    """sha256 hex of an input file's bytes."""
    return hashlib.sha256(data).hexdigest()


def latent_key(
    vae_fingerprint: str, image_digest: str, resolution: int | tuple[int, int], crop: str = "center"
) -> str:
    """Key of one image's latents: encoder, preprocessing (size, crop, version), bytes."""
    height, width = target_size(resolution)
    return cache_key(
        LATENTS,
        LATENT_FORMAT,
        PREPROCESS_VERSION,
        vae_fingerprint,
        image_digest,
        f"{height}x{width}",
        crop,
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


@contextlib.contextmanager
def _frozen(*modules: torch.nn.Module | None) -> Iterator[None]:
    """Eval mode and no autograd for the duration, restoring each module's mode after."""
    present = [m for m in modules if m is not None]
    modes = [m.training for m in present]
    try:
        for module in present:
            module.eval()
        with torch.no_grad():
            yield
    finally:
        for module, mode in zip(present, modes, strict=True):
            module.train(mode)


def encode_latents(vae: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) pixels in [-1, 1] -> (B, C, H/8, W/8) scaled posterior means."""
    with _frozen(vae):
        x = pixels.to(device=vae.device, dtype=vae.dtype)
        latents = vae.encode(x).latent_dist.mode()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * vae.config.scaling_factor


def encode_prompts(
    text_encoder: torch.nn.Module | None,
    text_encoder_2: torch.nn.Module,
    tokenizer,
    tokenizer_2,
    captions: Sequence[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(prompt_embeds (B, 77, D1 + D2), pooled_prompt_embeds (B, D2)) as SDXL's pipeline."""
    pairs = [(tokenizer, text_encoder), (tokenizer_2, text_encoder_2)]
    states, pooled = [], None
    with _frozen(text_encoder, text_encoder_2):
        for tok, encoder in pairs:
            if encoder is None:
                continue
            ids = tok(
                list(captions),
                padding="max_length",
                max_length=tok.model_max_length,
                truncation=True,
                return_tensors="pt",
            ).input_ids
            out = encoder(ids.to(encoder.device), output_hidden_states=True)
            states.append(out.hidden_states[-2])
            pooled = out.text_embeds if encoder is text_encoder_2 else pooled
    return torch.cat(states, dim=-1).to(text_encoder_2.dtype), pooled


@dataclass(frozen=True)
class EncodedItem:
    """One training sample by reference: its cache keys and SDXL time ids."""

    path: Path
    caption: str
    latent_key: str
    text_key: str
    time_ids: TimeIds


@dataclass
class EncodeStats:
    """What a build did: encoder calls (VAE + each text encoder), entries found and made."""

    encoder_forward_passes: int = 0
    vae_passes: int = 0
    text_passes: int = 0
    hits: int = 0
    misses: int = 0
    latents_encoded: int = 0
    captions_encoded: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return dataclasses.asdict(self)


@dataclass
class EncodedDataset:
    """The samples of one dataset as cache references, with the build's stats."""

    items: list[EncodedItem]
    resolution: int | tuple[int, int]
    stats: EncodeStats = field(default_factory=EncodeStats)

    def __len__(self) -> int:
        return len(self.items)


def build_cache(
    samples: Sequence[Sample],
    *,
    vae: torch.nn.Module | None,  # AutoencoderKL; None is fine if every latent is cached
    text_encoder: torch.nn.Module | None,  # CLIPTextModel; None for the refiner layout
    text_encoder_2: torch.nn.Module | None,  # CLIPTextModelWithProjection
    tokenizer,  # tokenizer of text_encoder (None with it)
    tokenizer_2,  # tokenizer of text_encoder_2
    cache: Cache,  # where entries live; shared between jobs
    resolution: int | tuple[int, int],  # square side or (height, width) of the crops
    vae_fingerprint: str | None = None,  # the VAE's weights and config; None: hash them now
    text_fingerprint: str | None = None,  # both text encoders and tokenizers; None: hash now
    crop: str = "center",  # crop mode, part of the latent key
    batch_size: int = 8,  # images or captions per encoder call
    progress: bool = True,  # show tqdm bars (images/s)
) -> EncodedDataset:
    """Make sure every sample's latents and caption embeddings are in `cache`.

    Only missing entries are encoded, in batches; each is locked while it is computed, so
    a concurrent build of the same cache (another expert's job) waits for it instead of
    computing it again. Returns the samples as cache references plus what was done.
    Fingerprints left as None are computed from the modules (`models.load.fingerprint`,
    seconds for SDXL); pass them to skip that and to run a warm cache with no models.
    """
    start, stats = time.perf_counter(), EncodeStats()
    if vae_fingerprint is None:
        vae_fingerprint = _module_fingerprint(_need(vae, "vae"))
    if text_fingerprint is None:
        text_fingerprint = text_encoders_fingerprint(
            text_encoder and _module_fingerprint(text_encoder),
            _module_fingerprint(_need(text_encoder_2, "text_encoder_2")),
            tokenizer,
            tokenizer_2,
        )
    images: dict[str, tuple[Sample, str]] = {}
    items = []
    for sample in samples:
        digest = file_digest(_read_bytes(sample.path))
        plan = plan_crop(sample.height, sample.width, resolution, crop)
        key = latent_key(vae_fingerprint, digest, resolution, crop)
        images[key] = (sample, digest)
        caption_key = text_key(text_fingerprint, sample.caption)
        items.append(EncodedItem(sample.path, sample.caption, key, caption_key, plan.time_ids))

    def latents_of(batch: list[tuple[Sample, str]]) -> list[Tensors]:
        pixels = torch.stack([_pixels(s, digest, resolution, crop) for s, digest in batch])
        stats.vae_passes += 1
        return [{"latents": z} for z in encode_latents(_need(vae, "vae"), pixels)]

    def embeddings_of(captions: list[str]) -> list[Tensors]:
        encoder_2 = _need(text_encoder_2, "text_encoder_2")
        embeds, pooled = encode_prompts(text_encoder, encoder_2, tokenizer, tokenizer_2, captions)
        stats.text_passes += 1 + (text_encoder is not None)
        return [
            {"prompt_embeds": e, "pooled_prompt_embeds": p}
            for e, p in zip(embeds, pooled, strict=True)
        ]

    captions = {item.text_key: item.caption for item in items}
    fill = {"cache": cache, "batch_size": batch_size, "stats": stats, "progress": progress}
    stats.latents_encoded = _fill(LATENTS, images, latents_of, unit="img", **fill)
    stats.captions_encoded = _fill(TEXT, captions, embeddings_of, unit="caption", **fill)
    stats.encoder_forward_passes = stats.vae_passes + stats.text_passes
    stats.seconds = time.perf_counter() - start
    return EncodedDataset(items=items, resolution=resolution, stats=stats)


def _fill(
    kind: str,
    jobs: dict[str, object],
    compute: Callable[[list], list[Tensors]],
    *,
    cache: Cache,
    batch_size: int,
    stats: EncodeStats,
    progress: bool,
    unit: str,
) -> int:
    """Compute and store the missing entries of `jobs` (key -> input); returns how many.

    Entries another builder holds are skipped and, after the batches, waited for; a
    builder never blocks while it holds locks, so two builders cannot deadlock.
    """
    todo = [(key, job) for key, job in jobs.items() if not cache.contains(kind, key)]
    stats.hits += len(jobs) - len(todo)
    stats.misses += len(todo)
    computed, deferred = 0, []
    bar = tqdm(total=len(todo), unit=unit, desc=f"caching {kind}", disable=not (progress and todo))
    with bar:
        for first in range(0, len(todo), batch_size):
            chunk = todo[first : first + batch_size]
            with contextlib.ExitStack() as held:
                mine = []
                for key, job in chunk:
                    if not held.enter_context(cache.lock(kind, key, blocking=False)):
                        deferred.append((key, job))
                    elif not cache.contains(kind, key, count=False):
                        mine.append((key, job))
                computed += _compute_and_put(cache, kind, mine, compute)
            bar.update(len(chunk))
    for key, job in deferred:
        with cache.lock(kind, key):
            if not cache.contains(kind, key, count=False):
                computed += _compute_and_put(cache, kind, [(key, job)], compute)
    return computed


def _compute_and_put(cache: Cache, kind: str, work: list, compute: Callable) -> int:
    if not work:
        return 0
    outputs = compute([job for _, job in work])
    for (key, _), tensors in zip(work, outputs, strict=True):
        cache.put(kind, key, tensors)
    return len(work)


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error}") from error


def _pixels(sample: Sample, digest: str, resolution, crop: str) -> torch.Tensor:
    """The sample's prepared pixels, checking the file is the one that was keyed and scanned."""
    data = _read_bytes(sample.path)
    if file_digest(data) != digest:
        raise DataError(f"{sample.path} changed while caching; run the cache step again")
    prepared = prepare(load_image(sample.path, data), resolution, crop)
    if prepared.plan.original != (sample.height, sample.width):
        raise DataError(f"{sample.path} changed since the folder was scanned; scan it again")
    return prepared.pixels


def _module_fingerprint(module: torch.nn.Module) -> str:
    from expertune.models.load import fingerprint  # the one hash of weights + config

    return fingerprint(module)


def _need(module: torch.nn.Module | None, name: str) -> torch.nn.Module:
    if module is None:
        raise ValueError(f"no {name} was given, and it is needed (a fingerprint or a cache miss)")
    return module


class CachedDataset(Dataset):
    """Training samples read from the cache: latents, prompt embeddings, pooled, time ids."""

    def __init__(self, encoded: EncodedDataset, cache: Cache) -> None:
        self.items = encoded.items
        self.cache = cache

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        latents = self.cache.get(LATENTS, item.latent_key)
        text = self.cache.get(TEXT, item.text_key)
        if latents is None or text is None:
            raise DataError(
                f"cache entry for {item.path} is missing or damaged under {self.cache.root}; "
                "build the cache again"
            )
        return {
            "latents": latents["latents"],
            "prompt_embeds": text["prompt_embeds"],
            "pooled_prompt_embeds": text["pooled_prompt_embeds"],
            "time_ids": torch.tensor(item.time_ids, dtype=torch.float32),
        }
