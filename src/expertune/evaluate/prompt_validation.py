"""Prompt validation: images from pure noise with the live expert, and through the refiner.

Only an expert whose band reaches the top of the schedule (stage one, or a single model)
can start from pure noise. Stage one alone runs the whole schedule with its own UNet
(what a user gets without stage two); the chain stops it at its lower band edge with
`denoising_end` and hands the latents to the refiner with `denoising_start`, the same
steps and scheduler, exactly as `expertune generate` and the seed's snippet do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PromptSettings:
    """How validation images are drawn (from the run's --validation_* flags)."""

    prompts: tuple[str, ...]
    images_per_prompt: int
    steps: int
    guidance: float
    guidance_rescale: float
    seed: int
    height: int
    width: int
    sizes: tuple[tuple[int, int], ...] = ()  # (height, width) each; () = (height, width)
    negative_prompt: str | None = None

    @classmethod
    def from_config(cls, cfg, prompts: tuple[str, ...]) -> PromptSettings:
        seed = cfg.validation_seed if cfg.validation_seed is not None else cfg.seed
        return cls(
            prompts,
            cfg.num_validation_images,
            cfg.validation_num_inference_steps,
            cfg.validation_guidance,
            cfg.validation_guidance_rescale,
            seed,
            cfg.resolution,
            cfg.resolution,
            sizes=getattr(cfg, "validation_sizes", ()),  # issue 9: --validation_resolution
            negative_prompt=getattr(cfg, "validation_negative_prompt", None),
        )

    def call_args(self, prompt: str) -> dict:
        negative = {"negative_prompt": self.negative_prompt} if self.negative_prompt else {}
        return negative | {
            "prompt": prompt,
            "num_images_per_prompt": self.images_per_prompt,
            "num_inference_steps": self.steps,
            "guidance_scale": self.guidance,
            "guidance_rescale": self.guidance_rescale,
            "generator": torch.Generator().manual_seed(self.seed),
        }


@dataclass(frozen=True)
class Rendered:
    """One validation image and what made it."""

    image: object  # PIL.Image
    kind: str  # "expert" (this expert alone) or "chain" (handed over to the refiner)
    prompt: str
    prompt_index: int
    sample: int
    size: tuple[int, int] | None = None  # (height, width) when validating several sizes


def render_prompts(
    base_pipe, settings: PromptSettings, refiner_pipe=None, handover: float | None = None
) -> list[Rendered]:
    """Every prompt's images from the expert alone, and through the refiner when given."""
    out: list[Rendered] = []
    sizes = settings.sizes or ((settings.height, settings.width),)
    for hw in sizes:
        tag = hw if len(sizes) > 1 else None
        out += _render_size(base_pipe, settings, hw, tag, refiner_pipe, handover)
    return out


def _render_size(base_pipe, settings, hw, tag, refiner_pipe, handover) -> list[Rendered]:
    """Every prompt's images at one (height, width)."""
    out: list[Rendered] = []
    size = {"height": hw[0], "width": hw[1]}
    for p, prompt in enumerate(settings.prompts):
        alone = base_pipe(**settings.call_args(prompt), **size).images
        out += [Rendered(img, "expert", prompt, p, i, tag) for i, img in enumerate(alone)]
        if refiner_pipe is None:
            continue
        args = settings.call_args(prompt)  # one generator for both stages, as generate does
        latents = base_pipe(**args, **size, denoising_end=handover, output_type="latent").images
        args |= {"prompt": [prompt] * len(latents), "num_images_per_prompt": 1}
        if "negative_prompt" in args:
            args["negative_prompt"] = [args["negative_prompt"]] * len(latents)
        finished = refiner_pipe(**args, image=latents, denoising_start=handover).images
        out += [Rendered(img, "chain", prompt, p, i, tag) for i, img in enumerate(finished)]
    return out


def render_through(chain_pipe, settings: PromptSettings) -> list[Rendered]:
    """Every prompt's images from pure noise through the whole chain (kind "chain")."""
    out: list[Rendered] = []
    sizes = settings.sizes or ((settings.height, settings.width),)
    for hw in sizes:
        tag = hw if len(sizes) > 1 else None
        size = {"height": hw[0], "width": hw[1]}
        for p, prompt in enumerate(settings.prompts):
            images = chain_pipe(**settings.call_args(prompt), **size).images
            out += [Rendered(img, "chain", prompt, p, i, tag) for i, img in enumerate(images)]
    return out
