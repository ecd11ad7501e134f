"""Fill the caches with VAE latents and SDXL text embeddings, counting encoder passes.

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

Keys (keys.py) cover everything the tensors depend on: the encoder fingerprint (weights,
config and, for text, the tokenizers, so the refiner's text layout never meets the
base's), the whole resize-and-crop plan, and the input bytes or caption. A build whose
entries are all present runs no encoder at all.

How a build batches, locks and fails (`fill.py` does the work): jobs are sorted by key and
cut into fixed chunks, so a build's bytes do not depend on how many builders share it.
An image that turns out truncated or corrupt when decoded is dropped and listed in
`EncodedDataset.failed`; it never stops the build.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from expertune.data.cache import Caches, Tensors
from expertune.data.cache_use import Claim
from expertune.data.conditioning_images import KEY as CONDITIONING
from expertune.data.fill import Filler, progress_bar
from expertune.data.images import CropPlan, load_image, render
from expertune.data.keys import LATENTS, TEXT, latent_key, text_encoders_fingerprint, text_key
from expertune.data.local_folder import Sample, file_digest
from expertune.errors import DataError


@contextlib.contextmanager
def _frozen(*modules: torch.nn.Module | None) -> Iterator[None]:
    """Eval mode and no autograd for the duration, restoring the modules in training mode
    after (modules already in eval mode are not walked: that costs a forward pass's worth
    of Python on a small encoder)."""
    training = [m for m in modules if m is not None and m.training]
    try:
        for module in training:
            module.eval()
        with torch.no_grad():
            yield
    finally:
        for module in training:
            module.train(True)


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
class PlannedImage:
    """An image as it will be trained: the sample, its crop into its bucket, its time ids,
    its dataset and the cache folders of its latents and caption."""

    sample: Sample
    plan: CropPlan
    time_ids: tuple[float, ...]
    dataset: str
    latent_root: Path
    text_root: Path
    conditioning: Sample | None = None  # ControlNet: its conditioning image, same crop


@dataclass(frozen=True)
class EncodedItem:
    """One sample by reference: where its tensors are cached, its SDXL time ids, its bucket."""

    path: Path
    caption: str
    dataset: str
    bucket: tuple[int, int]  # (height, width) in pixels
    time_ids: tuple[float, ...]
    latent_key: str
    text_key: str
    latent_root: Path
    text_root: Path


def key_items(
    planned: Sequence[PlannedImage], vae_fingerprint: str, text_fingerprint: str
) -> list[EncodedItem]:
    """The cache references of `planned` images; needs fingerprints, not models."""
    return [
        EncodedItem(
            path=p.sample.path,
            caption=p.sample.caption,
            dataset=p.dataset,
            bucket=p.plan.target,
            time_ids=p.time_ids,
            latent_key=latent_key(vae_fingerprint, _input_digest(p), p.plan),
            text_key=text_key(text_fingerprint, p.sample.caption),
            latent_root=p.latent_root,
            text_root=p.text_root,
        )
        for p in planned
    ]


@dataclass
class Encoders:
    """The modules a build may run; any may be None when every entry it makes is cached."""

    vae: torch.nn.Module | None  # AutoencoderKL
    text_encoder: torch.nn.Module | None  # CLIPTextModel; None in the refiner layout
    text_encoder_2: torch.nn.Module | None  # CLIPTextModelWithProjection
    tokenizer: object = None  # tokenizer of text_encoder
    tokenizer_2: object = None  # tokenizer of text_encoder_2

    @classmethod
    def of(cls, components) -> Encoders:
        """The encoders of loaded model components (models.load.Components)."""
        c = components
        return cls(c.vae, c.text_encoder, c.text_encoder_2, c.tokenizer, c.tokenizer_2)

    def fingerprints(self) -> dict[str, str]:
        """{"vae": ..., "text": ...}: hashes of weights + config (+ tokenizers for text)."""
        first = self.text_encoder
        return {
            "vae": _module_fingerprint(_need(self.vae, "vae")),
            "text": text_encoders_fingerprint(
                _module_fingerprint(first) if first is not None else None,
                _module_fingerprint(_need(self.text_encoder_2, "text_encoder_2")),
                self.tokenizer,
                self.tokenizer_2,
            ),
        }


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
    """Encoded images as cache references, the build's stats and the images that failed."""

    items: list[EncodedItem]
    stats: EncodeStats = field(default_factory=EncodeStats)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    claim: Claim | None = None  # the entries claimed for this job (cache_use.py)

    def __len__(self) -> int:
        return len(self.items)


def build_cache(
    planned: Sequence[PlannedImage],
    encoders: Encoders,
    *,
    fingerprints: dict[str, str] | None = None,  # {"vae", "text"}; None: hash the modules
    batch_size: int = 8,  # images or captions per encoder call
    progress: bool = True,  # tqdm bars (images/s) on stderr
    caches: Caches | None = None,  # Cache objects by folder, shared with the caller
    extra_captions: Sequence[str] = (),  # also cached in every text folder ("" for dropout)
) -> EncodedDataset:
    """Make sure every planned image's latents and caption embeddings are cached.

    Returns the images that could be encoded as cache references; images that fail to
    decode are left out and listed in `failed`. Pass `fingerprints` to skip hashing the
    modules and to run a warm cache with no models at all.
    """
    start, stats = time.perf_counter(), EncodeStats()
    caches = caches or Caches()
    fps = fingerprints or encoders.fingerprints()
    every = key_items(planned, fps["vae"], fps["text"])
    claim = claim_entries(every)  # before any entry is read: prune leaves them alone
    latent_jobs: dict[tuple[Path, tuple[int, int]], dict[str, PlannedImage]] = {}
    for item, image in zip(every, planned, strict=True):
        latent_jobs.setdefault((item.latent_root, item.bucket), {})[item.latent_key] = image

    def vae_encode(inputs: list) -> list[Tensors]:
        stats.vae_passes += 1
        pairs = [x if isinstance(x, tuple) else (x, None) for x in inputs]
        latents = encode_latents(_need(encoders.vae, "vae"), torch.stack([p for p, _ in pairs]))
        entries: list[Tensors] = [{"latents": z} for z in latents]
        for entry, (_, cond) in zip(entries, pairs, strict=True):
            if cond is not None:  # ControlNet: cached beside the latents it goes with
                entry[CONDITIONING] = cond
        return entries

    fillers = [
        Filler(caches(root), LATENTS, jobs, _pixels, vae_encode, batch_size)
        for (root, _), jobs in sorted(latent_jobs.items(), key=lambda kv: (str(kv[0][0]), kv[0][1]))
    ]
    failed = _run(fillers, progress, "caching latents", "img")
    stats.latents_encoded = sum(f.written for f in fillers)
    items = [item for item in every if item.latent_key not in failed]
    text_jobs: dict[Path, dict[str, str]] = {}
    for item in items:
        text_jobs.setdefault(item.text_root, {})[item.text_key] = item.caption
    for jobs in text_jobs.values():
        for caption in extra_captions:
            jobs[text_key(fps["text"], caption)] = caption
    text_fillers = [
        Filler(caches(root), TEXT, jobs, str, _text_encoder(encoders, stats), batch_size)
        for root, jobs in sorted(text_jobs.items(), key=lambda kv: str(kv[0]))
    ]
    _run(text_fillers, progress, "caching text", "caption")
    stats.captions_encoded = sum(f.written for f in text_fillers)
    for filler in fillers + text_fillers:
        stats.hits += filler.hits
        stats.misses += filler.misses
    stats.encoder_forward_passes = stats.vae_passes + stats.text_passes
    stats.seconds = time.perf_counter() - start
    failures = [(item.path, failed[item.latent_key]) for item in every if item.latent_key in failed]
    return EncodedDataset(items=items, stats=stats, failed=failures, claim=claim)


def claim_entries(items: Sequence[EncodedItem]) -> Claim:
    """Claim every entry `items` read, per cache folder, for as long as the job runs."""
    by_root: dict[Path, set[tuple[str, str]]] = {}
    for item in items:
        by_root.setdefault(item.latent_root, set()).add((LATENTS, item.latent_key))
        by_root.setdefault(item.text_root, set()).add((TEXT, item.text_key))
    claim = Claim()
    for root, entries in by_root.items():
        claim.add(root, entries)
    return claim


def _run(fillers: list[Filler], progress: bool, desc: str, unit: str) -> dict[str, str]:
    """Run every filler under one progress bar; returns the failures of all of them."""
    with progress_bar(progress, desc, unit, sum(f.misses for f in fillers)) as bar:
        for filler in fillers:
            filler.run(bar)
    return {key: why for filler in fillers for key, why in filler.failed.items()}


def _text_encoder(encoders: Encoders, stats: EncodeStats):
    """captions -> text entries, counting one pass per text encoder that runs."""

    def encode(captions: list[str]) -> list[Tensors]:
        e = encoders
        second = _need(e.text_encoder_2, "text_encoder_2")
        embeds, pooled = encode_prompts(
            e.text_encoder, second, e.tokenizer, e.tokenizer_2, captions
        )
        stats.text_passes += 1 + (e.text_encoder is not None)
        return [
            {"prompt_embeds": x, "pooled_prompt_embeds": p}
            for x, p in zip(embeds, pooled, strict=True)
        ]

    return encode


def _input_digest(p: PlannedImage) -> str:
    """What the latent entry is made from: the image's bytes (and its conditioning's)."""
    if p.conditioning is None:
        return p.sample.digest
    return f"{p.sample.digest}+conditioning:{p.conditioning.digest}"


def _pixels(job: PlannedImage) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The image's pixels as planned (with its conditioning pixels in [0, 1] when it has
    a conditioning image); DataError if it cannot be decoded or has changed."""
    path = job.sample.path
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from error
    if file_digest(data) != job.sample.digest:
        raise DataError(f"{path} changed since the folder was scanned; run again")
    image = load_image(path, data)
    if (image.height, image.width) != job.plan.original:
        raise DataError(f"{path} changed since the folder was scanned; run again")
    pixels = render(image, job.plan)
    if job.conditioning is None:
        return pixels
    from expertune.data.conditioning_images import render_conditioning

    return pixels, render_conditioning(job.conditioning, job.plan)


def _module_fingerprint(module: torch.nn.Module) -> str:
    from expertune.models.load import fingerprint  # the one hash of weights + config

    return fingerprint(module)


def _need(module: torch.nn.Module | None, name: str) -> torch.nn.Module:
    if module is None:
        raise ValueError(f"no {name} was given, and it is needed (a fingerprint or a cache miss)")
    return module
