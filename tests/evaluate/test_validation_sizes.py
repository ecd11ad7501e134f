"""--validation_resolution (WxH or a list) and --validation_negative_prompt reach the
pipeline call exactly as diffusers' own call with those arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from expertune.config import load_config
from expertune.errors import ConfigError
from expertune.evaluate.prompt_validation import PromptSettings, render_prompts


def _cfg(*flags):
    return load_config(None, ["--model_name=m", "--resolution=64", *flags])


def test_sizes_parse_width_first_and_default_to_resolution():
    assert _cfg().validation_sizes == ((64, 64),)
    assert _cfg("--validation_resolution=128x64,96").validation_sizes == ((64, 128), (96, 96))
    with pytest.raises(ConfigError, match=r"validation_resolution=12x64 .*multiple of 8"):
        _cfg("--validation_resolution=12x64")
    with pytest.raises(ConfigError, match=r"not a size"):
        _cfg("--validation_resolution=big")


def test_every_size_with_the_negative_prompt_equals_diffusers_call(tiny_model_dir):
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model_dir, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    cfg = _cfg(
        "--validation_resolution=128x64,64x64",
        "--validation_negative_prompt=blurry",
        "--validation_num_inference_steps=2",
        "--validation_prompt=a cat",
    )
    settings = PromptSettings.from_config(cfg, cfg.validation_prompts)
    rendered = render_prompts(pipe, settings)
    assert [(r.image.height, r.image.width, r.size) for r in rendered] == [
        (64, 128, (64, 128)),
        (64, 64, (64, 64)),
    ]
    want = pipe(
        prompt="a cat",
        negative_prompt="blurry",
        num_inference_steps=2,
        guidance_scale=cfg.validation_guidance,
        generator=torch.Generator().manual_seed(cfg.seed),
        height=64,
        width=128,
    ).images[0]
    assert np.array_equal(np.asarray(rendered[0].image), np.asarray(want))
    without = pipe(
        prompt="a cat",
        num_inference_steps=2,
        guidance_scale=cfg.validation_guidance,
        generator=torch.Generator().manual_seed(cfg.seed),
        height=64,
        width=128,
    ).images[0]
    assert not np.array_equal(np.asarray(without), np.asarray(want))
