"""Two experts chained the way the seed does it (the fallback of `generate`; the default is
the router, pipeline/routed.py): base with `denoising_end`, latents handed
to the refiner's Img2Img pipeline with `denoising_start`, same steps and scheduler family.

The base is an SDXL-family expert; the refiner either another SDXL-family expert (the
seed's stage two) or an SDXL-refiner-family one (text_encoder_2 only, aesthetic score in
its time ids: the classic SDXL base + refiner). The VAE, text encoders and tokenizers are
loaded once and shared part by part when both experts record the same fingerprint for
that part (sharing.py); the parameterisation is read from the saved scheduler configs,
never from flags.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from expertune.errors import ModelReferenceError
from expertune.pipeline.experts import ExpertInfo, check_same_parameterisation, read_expert
from expertune.pipeline.sharing import shared_parts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageOptions:
    """Per-stage prompt and guidance (the seed lets each stage differ)."""

    prompt: str
    guidance_scale: float = 9.2
    guidance_rescale: float = 0.0
    negative_prompt: str | None = None


@dataclass(frozen=True)
class ChainRequest:
    base: StageOptions
    refiner: StageOptions
    steps: int = 40
    base_model_power: float | None = None
    seed: int = 0
    height: int | None = None
    width: int | None = None
    scheduler: str = "unipc"


def default_power(base: ExpertInfo, refiner: ExpertInfo) -> float:
    """1 - the refiner's trained strength (the seed's formula); 0.8 if nobody recorded one."""
    for expert in (refiner, base):
        if expert.strength is not None:
            return round(1.0 - expert.strength, 6)
    log.warning("neither expert records a strength; using --base-model-power 0.8")
    return 0.8


def check_base_family(base: ExpertInfo) -> None:
    """Stage one must be an SDXL-family model: a refiner cannot start from pure noise."""
    family = base.family
    if family != "sdxl":
        raise ModelReferenceError(
            f"--base {base.path} is a {family} model, which only refines (no text_encoder, "
            "aesthetic-score time ids); pass an SDXL-family expert as --base and this one "
            "as --refiner"
        )


class ExpertChain:
    """Base and refiner pipelines sharing what can be shared, ready to generate."""

    def __init__(
        self,
        base_dir: str | Path,
        refiner_dir: str | Path,
        scheduler: str = "unipc",
        device=None,
    ):
        from expertune.pipeline.schedulers import check_scheduler

        self.base_info = read_expert(base_dir, "--base")
        self.refiner_info = read_expert(refiner_dir, "--refiner")
        param = check_same_parameterisation([self.base_info, self.refiner_info])
        check_base_family(self.base_info)
        check_scheduler(scheduler, param)
        self.base, self.refiner = _load_pair(self.base_info, self.refiner_info, scheduler)
        if device is not None:
            self.base.to(device)
            self.refiner.to(device)

    def __call__(self, req: ChainRequest):
        import torch

        power = req.base_model_power
        if power is None:
            power = default_power(self.base_info, self.refiner_info)
        generator = torch.Generator().manual_seed(req.seed)
        latents = self.base(
            **_stage_kwargs(req.base, req.steps, generator),
            denoising_end=power,
            height=req.height,
            width=req.width,
            output_type="latent",
        ).images
        return self.refiner(
            **_stage_kwargs(req.refiner, req.steps, generator),
            denoising_start=power,
            image=latents,
        ).images[0]


def _stage_kwargs(stage: StageOptions, steps: int, generator) -> dict:
    """What both stages pass alike: prompt, guidance, the shared step count and generator."""
    return {
        "prompt": stage.prompt,
        "negative_prompt": stage.negative_prompt,
        "num_inference_steps": steps,
        "guidance_scale": stage.guidance_scale,
        "guidance_rescale": stage.guidance_rescale,
        "generator": generator,
    }


def _load_pair(base: ExpertInfo, refiner: ExpertInfo, scheduler: str):
    from expertune.io import no_progress_bars

    with no_progress_bars():
        return _load_pipelines(base, refiner, scheduler)


def _load_pipelines(base: ExpertInfo, refiner: ExpertInfo, scheduler: str):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    from expertune.pipeline.schedulers import make_scheduler

    base_pipe = StableDiffusionXLPipeline.from_pretrained(
        base.path, use_safetensors=True, add_watermarker=False
    )
    saved = base_pipe.scheduler.config
    base_pipe.scheduler = make_scheduler(scheduler, saved)
    shared = {name: getattr(base_pipe, name) for name in shared_parts(base, refiner)}
    log.debug("refiner shares %s with the base", ", ".join(shared) or "nothing")
    refiner_pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(
        refiner.path, use_safetensors=True, add_watermarker=False, **shared
    )
    refiner_pipe.scheduler = make_scheduler(scheduler, saved)
    for pipe in (base_pipe, refiner_pipe):
        pipe.set_progress_bar_config(leave=False)
    return base_pipe, refiner_pipe


def save_image(image, out: Path) -> Path:
    """Save beside, then rename, so a crash never leaves half an image at `out`."""
    import os

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix}")
    image.save(tmp)
    os.replace(tmp, out)
    return out
