"""Cache build throughput against a bare encode loop, and a second job's encoder passes.

For each model, on the same images in the same process:
- bare: read, decode, resize/crop, VAE-encode in batches, text-encode the captions in
  batches; nothing hashed, locked or written;
- build: what a training job does to get its cache (`data.training_set.prepare_data`:
  scan and hash the folder, plan buckets and crops, lock, encode, write entries
  atomically), into an empty cache;
- second job: `prepare_data` again on the filled cache; its encoder forward passes
  (counted by hooks on the modules, and by the build's own stats) should be 0.
The ratio is bare time / build time (1.0 = no overhead; target >= 0.9 at SDXL sizes,
so the last line gives the sdxl-vae ratio and the tiny one beside it). Bare and build
alternate `--rounds` times and the best of each is kept. On a busy machine the encoders'
own time swings more than the cache's whole overhead, so the time spent outside the
encoders during the build (overhead) is also measured, and the second ratio is
bare encoder time / (bare encoder time + overhead), which that noise does not move.

Models: "tiny" (the embedded test model, 64 px: encoders are so small that file work
dominates) and "sdxl-vae" (SDXL's VAE built from its config plus two CLIP-L-sized text
encoders, random weights, at 128 px: encoders dominate, as with a real model). The build
includes hashing the encoders' weights once per job (their fingerprint, part of every
key); that one-off cost is also shown on its own.

    python benchmarks/cache_build.py [--models tiny sdxl-vae] [--images 48] [--rounds 2]
                                     [--batch 4] [--threads N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from expertune.config.schema import TrainConfig
from expertune.data import encode
from expertune.data.demo_images import make_demo_images
from expertune.data.encode import Encoders, encode_latents, encode_prompts
from expertune.data.images import load_image, plan_crop, render
from expertune.data.local_folder import list_images
from expertune.data.training_set import prepare_data
from expertune.models.family import SDXL


def tiny_model(work: Path):
    from expertune.models.load import load_components
    from expertune.models.tiny import build_tiny_sdxl

    return load_components(str(build_tiny_sdxl(work / "tiny"))), 64


def sdxl_vae_model(work: Path):
    """SDXL's VAE architecture and two CLIP-L-sized encoders, random weights, from config."""
    from diffusers import AutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from expertune.models.tokenizer import build_tiny_tokenizer

    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=1024,
        scaling_factor=0.13025,
    ).eval()
    tokenizer = build_tiny_tokenizer()
    tokenizer_2 = build_tiny_tokenizer(pad_token="!")

    def clip(tok, cls):
        config = CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            projection_dim=768,
            max_position_embeddings=tok.model_max_length,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        return cls(config).eval()

    parts = SimpleNamespace(
        vae=vae,
        text_encoder=clip(tokenizer, CLIPTextModel),
        text_encoder_2=clip(tokenizer_2, CLIPTextModelWithProjection),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer_2,
        family=SDXL.name,
    )
    return parts, 128


MODELS = {"tiny": tiny_model, "sdxl-vae": sdxl_vae_model}


def bare_loop(folder: Path, parts, resolution: int, batch: int) -> float:
    """Seconds to decode, crop and encode every image and caption, writing nothing."""
    start = time.perf_counter()
    paths = list_images(folder)
    for first in range(0, len(paths), batch):
        pixels = []
        for path in paths[first : first + batch]:
            image = load_image(path, path.read_bytes())
            pixels.append(render(image, plan_crop(image.height, image.width, resolution)))
        encode_latents(parts.vae, torch.stack(pixels))
    captions = sorted({p.with_suffix(".txt").read_text().strip() for p in paths})
    for first in range(0, len(captions), batch):
        encode_prompts(
            parts.text_encoder,
            parts.text_encoder_2,
            parts.tokenizer,
            parts.tokenizer_2,
            captions[first : first + batch],
        )
    return time.perf_counter() - start


class PassCounter:
    """Counts real forward calls of the encoder modules."""

    def __init__(self, parts) -> None:
        self.calls = 0
        modules = [parts.vae.encoder, parts.text_encoder, parts.text_encoder_2]
        self.handles = [m.register_forward_pre_hook(self._hook) for m in modules]

    def _hook(self, module, args) -> None:
        self.calls += 1

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class EncoderClock:
    """Seconds spent inside the encode functions, by the bare loop and the build alike.

    On a busy machine the encoders' own time swings by tens of percent between runs;
    total minus encoder time is the cache's overhead, which does not.
    """

    NAMES = ("encode_latents", "encode_prompts")

    def __init__(self) -> None:
        self.seconds = 0.0
        for module in (encode, sys.modules[__name__]):
            for name in self.NAMES:
                setattr(module, name, self._timed(getattr(encode, name)))

    def _timed(self, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed

    def measure(self, fn) -> tuple[float, float]:
        """(total seconds, seconds inside the encoders) of fn()."""
        self.seconds, start = 0.0, time.perf_counter()
        fn()
        return time.perf_counter() - start, self.seconds


def run(name: str, images: int, rounds: int, batch: int, work: Path) -> dict:
    parts, resolution = MODELS[name](work)
    folder = work / f"{name}-images"
    make_demo_images(folder, n=images, size=resolution * 3 // 2)
    cfg = dict(
        pretrained_model_name_or_path="unused",
        instance_data_dir=str(folder),
        resolution=resolution,
        vae_batch_size=batch,
    )
    bare_loop(folder, parts, resolution, batch)  # warm-up: kernels, file cache
    start = time.perf_counter()
    Encoders.of(parts).fingerprints()
    fingerprint_s = time.perf_counter() - start
    clock, bare, build = EncoderClock(), [], []
    for r in range(rounds):
        bare.append(clock.measure(lambda: bare_loop(folder, parts, resolution, batch)))
        config = TrainConfig(**cfg, cache_dir=str(work / f"{name}-cache-{r}"))
        build.append(
            clock.measure(lambda c=config: prepare_data(c, parts, global_batch=1, progress=False))
        )
    counter = PassCounter(parts)
    config = TrainConfig(**cfg, cache_dir=str(work / f"{name}-cache-0"))
    second = prepare_data(config, parts, global_batch=1, progress=False)
    counter.remove()
    bare_s, build_s = min(t for t, _ in bare), min(t for t, _ in build)
    overhead = min(t - e for t, e in build)  # work outside the encoders
    encoders = min(e for _, e in bare)
    return {
        "model": name,
        "images": images,
        "bare_s": bare_s,
        "build_s": build_s,
        "ratio": bare_s / build_s,
        "overhead_s": overhead,
        "fingerprint_s": fingerprint_s,
        "ratio_from_overhead": encoders / (encoders + overhead),
        "second_job_forward_calls": counter.calls,
        "second_job_stats_passes": second.stats.encoder_forward_passes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4, help="images per encoder call")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)  # 1 is steadier on a machine shared with others
    print(f"torch threads: {torch.get_num_threads()}, {args.batch} per encoder call")
    print(
        f"{'model':9} {'images':>6} {'bare s':>7} {'build s':>7} {'ratio':>5}  "
        f"{'overhead s (fingerprint)':>24} {'ratio':>5}  second job"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            r = run(name, args.images, args.rounds, args.batch, Path(tmp))
            results.append(r)
            print(
                f"{r['model']:9} {r['images']:6d} {r['bare_s']:7.2f} {r['build_s']:7.2f} "
                f"{r['ratio']:5.2f}  {r['overhead_s']:13.2f} ({r['fingerprint_s']:.2f}s) "
                f"{r['ratio_from_overhead']:7.2f}  {r['second_job_forward_calls']} encoder "
                f"forward calls (stats: {r['second_job_stats_passes']})",
                flush=True,
            )
    print(last_line(results))


def last_line(results: list[dict]) -> str:
    """The ratio at SDXL sizes, where issue 11 sets its target (>= 0.9), and the others.

    The tiny model's encoders take milliseconds, so its ratio measures file work alone
    (scan, hash, lock, atomic writes); it is printed beside the target ratio, not as it.
    """
    target = next((r for r in results if r["model"] == "sdxl-vae"), None)
    others = ", ".join(f"{r['model']} {r['ratio']:.3f}" for r in results if r is not target)
    if target is None:
        return f"ratio bare/build = n/a at SDXL sizes (only {others}; target >= 0.9)"
    tail = f"; {others}, file work only" if others else ""
    return f"ratio bare/build = {target['ratio']:.3f} (sdxl-vae, target >= 0.9{tail})"


if __name__ == "__main__":
    main()
