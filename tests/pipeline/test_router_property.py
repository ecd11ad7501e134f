"""Property: for every scheduler, spacing, step count, strength and K-expert plan, each expert
receives only timesteps inside its band, and the timesteps all experts receive, in order,
are exactly those the single-model pipeline gives its UNet with the same settings.

Every example runs diffusers' own StableDiffusionXLPipeline (or Img2Img, when a strength
is drawn) twice: once with the router as its unet, once with one plain UNet; forward
pre-hooks on the UNets record what each really receives.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from expertune.errors import ConfigError
from expertune.pipeline.router import TimestepRouter
from expertune.pipeline.schedulers import SCHEDULER_NAMES, make_scheduler
from pipeline.router_support import CallLog, out_of_band, perturbed_unet

SPACINGS = ("leading", "linspace", "trailing")
# ROUTER_EXAMPLES=500 draws that many fresh examples (200 ran clean in 83 s on 2 cores).
EXAMPLES = int(os.environ.get("ROUTER_EXAMPLES", "0"))


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    """The tiny pipeline's parts, four different expert UNets and one encoded prompt."""
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_model_dir, add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    embeds, _, pooled, _ = pipe.encode_prompt("a red circle", do_classifier_free_guidance=False)
    unets = [perturbed_unet(tiny_model_dir, seed) for seed in range(4)]
    return {"pipe": pipe, "unets": unets, "embeds": embeds, "pooled": pooled}


def _run(parts, unet, scheduler, strength, steps, seed=0):
    """One generation (latents out) with `unet` as the pipeline's UNet."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    components = {**parts["pipe"].components, "unet": unet, "scheduler": scheduler}
    kwargs = {
        "prompt_embeds": parts["embeds"],
        "pooled_prompt_embeds": parts["pooled"],
        "num_inference_steps": steps,
        "guidance_scale": 1.0,
        "output_type": "latent",
        "generator": torch.Generator().manual_seed(seed),
    }
    if strength is None:
        pipe = StableDiffusionXLPipeline(**components, add_watermarker=False)
        kwargs.update(height=64, width=64)
    else:
        pipe = StableDiffusionXLImg2ImgPipeline(**components, add_watermarker=False)
        image = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed + 1))
        kwargs.update(image=image, strength=strength)
    pipe.set_progress_bar_config(disable=True)
    return pipe(**kwargs)


@st.composite
def plans(draw):
    k = draw(st.integers(2, 4))
    inner = draw(st.lists(st.integers(1, 999), min_size=k - 1, max_size=k - 1, unique=True))
    return (0, *sorted(inner), 1000)


@settings(
    max_examples=EXAMPLES or 24,
    deadline=None,
    derandomize=not EXAMPLES,  # the suite draws the same examples every run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=st.sampled_from(SCHEDULER_NAMES),
    spacing=st.sampled_from(SPACINGS),
    zero_snr=st.booleans(),
    steps=st.integers(1, 60),
    strength=st.none() | st.floats(0.05, 1.0),
    edges=plans(),
)
def test_every_expert_stays_in_its_band_and_the_timesteps_are_the_pipelines(
    parts, name, spacing, zero_snr, steps, strength, edges
):
    if strength is not None:
        assume(int(steps * strength) >= 1)  # diffusers refuses fewer denoising steps
    config = {
        **parts["pipe"].scheduler.config,
        "timestep_spacing": spacing,
        "rescale_betas_zero_snr": zero_snr,
        "prediction_type": "v_prediction" if zero_snr else "epsilon",
    }
    try:
        make_scheduler(name, config)
    except ConfigError as err:  # only the parameterisation a class cannot honour
        assert zero_snr and "zero-terminal-SNR" in str(err)
        return
    unets = parts["unets"][: len(edges) - 1]
    router = TimestepRouter.from_unets(unets, edges)
    routed = CallLog(unets)
    try:
        _run(parts, router, make_scheduler(name, config), strength, steps)
    finally:
        routed.remove()
    single = CallLog(unets[:1])
    try:
        _run(parts, unets[0], make_scheduler(name, config), strength, steps)
    finally:
        single.remove()
    assert routed.timesteps == single.timesteps
    assert out_of_band(routed.calls, edges) == 0, routed.calls
    assert all(0 <= t < 1000 for t in routed.timesteps)  # no scheduler leaves [0, T)
