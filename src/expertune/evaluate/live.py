"""Inference from a training run's live parts: the UNet being trained, its frozen encoders,
and a scheduler carrying the run's parameterisation, with no copies and no reload."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from expertune.evaluate.rng import preserved_rng


@contextlib.contextmanager
def inference_mode(trainer) -> Iterator[torch.nn.Module]:
    """The unwrapped UNet in eval mode without autograd, RNG preserved; training mode back after.

    Everything that renders or scores during training runs inside this block, so training
    continues exactly as if it had not happened.
    """
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    was_training = unet.training
    unet.eval()
    try:
        with preserved_rng(), torch.no_grad():
            yield unet
    finally:
        unet.train(was_training)


def inference_scheduler(trainer):
    """The base model's scheduler class with the trained parameterisation written in."""
    from expertune.pipeline.assemble import inference_scheduler as build

    return build(trainer.components.scheduler_config, trainer.param)


def shared_parts(trainer) -> dict:
    """VAE, text encoders and tokenizers of the run, as pipeline keyword arguments."""
    c = trainer.components
    return {
        "vae": c.vae,
        "text_encoder": c.text_encoder,
        "text_encoder_2": c.text_encoder_2,
        "tokenizer": c.tokenizer,
        "tokenizer_2": c.tokenizer_2,
    }


def base_pipeline(trainer, unet):
    """A StableDiffusionXLPipeline around the live UNet, on the training device."""
    from expertune.pipeline.assemble import assemble_pipeline

    pipe = assemble_pipeline(trainer.components, unet, trainer.param, img2img=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(trainer.accelerator.device)


def controlnet_pipeline(trainer, controlnet, image: torch.Tensor):
    """A StableDiffusionXLControlNetPipeline of the run's frozen UNet and the live
    ControlNet (--controlnet), with the conditioning `image` (1x3xHxW in [0, 1]) bound to
    every call, so it renders prompts exactly as `base_pipeline`'s pipeline does."""
    import functools

    from diffusers import StableDiffusionXLControlNetPipeline

    base = base_pipeline(trainer, trainer.frozen_unet)
    pipe = StableDiffusionXLControlNetPipeline(
        **shared_parts(trainer),
        unet=trainer.frozen_unet,
        controlnet=controlnet,
        scheduler=base.scheduler,
        force_zeros_for_empty_prompt=base.config.force_zeros_for_empty_prompt,
        add_watermarker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.to(trainer.accelerator.device)
    return functools.partial(pipe, image=image.to(trainer.accelerator.device))
