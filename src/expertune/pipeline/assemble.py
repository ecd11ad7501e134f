"""One place that builds a diffusers SDXL pipeline from parts: components + UNet + the
trained parameterisation. Publishing a trained expert, validation during training and
inference from a run's live parts all go through `assemble_pipeline`.
"""

from __future__ import annotations

from pathlib import Path


def inference_scheduler(scheduler_config: dict, param):
    """The base model's scheduler class with the trained parameterisation written in."""
    import diffusers

    from expertune.schedule.noise import inference_scheduler_config

    cls = getattr(diffusers, scheduler_config.get("_class_name", ""), None)
    cls = cls or diffusers.EulerDiscreteScheduler
    return cls.from_config(inference_scheduler_config(scheduler_config, param))


def assemble_pipeline(components, unet, param, *, img2img: bool | None = None, scheduler=None):
    """An SDXL pipeline around `unet` with the VAE, encoders and tokenizers of `components`.

    `img2img=None` picks the family's own class: an SDXL expert is a
    StableDiffusionXLPipeline, an SDXL-refiner expert the StableDiffusionXLImg2ImgPipeline
    its family loads with (`requires_aesthetics_score`), as stabilityai's refiner is laid
    out. `img2img=True` asks for the Img2Img class whatever the family (a refiner stage
    that continues from latents). Pipeline settings the source model_index.json gives
    (`force_zeros_for_empty_prompt`) are kept.
    """
    import diffusers

    from expertune.models.family import get_family

    family = get_family(components.family)
    settings = _source_settings(getattr(components, "model_path", None))
    if family.requires_aesthetics_score:
        settings["requires_aesthetics_score"] = True
    use_img2img = family.requires_aesthetics_score if img2img is None else img2img
    cls = (
        diffusers.StableDiffusionXLImg2ImgPipeline
        if use_img2img
        else diffusers.StableDiffusionXLPipeline
    )
    return cls(
        vae=components.vae,
        text_encoder=components.text_encoder,
        text_encoder_2=components.text_encoder_2,
        tokenizer=components.tokenizer,
        tokenizer_2=components.tokenizer_2,
        unet=unet,
        scheduler=scheduler or inference_scheduler(components.scheduler_config, param),
        add_watermarker=False,
        **settings,
    )


def _source_settings(model_path: Path | None) -> dict:
    """`force_zeros_for_empty_prompt` of the source model_index.json, when it says."""
    if model_path is None:
        return {}
    from expertune.models.load import read_model_index

    index = read_model_index(model_path)
    key = "force_zeros_for_empty_prompt"
    return {key: bool(index[key])} if key in index else {}
