"""The router inside an ordinary SDXL pipeline: same image as the two-pipeline chain for a
first-order scheduler (per-stage guidance included), routing by each call's timestep, and
the Python API that loads a manifest or expert folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from expertune.errors import ConfigError
from expertune.pipeline.chain import ChainRequest, ExpertChain, StageOptions
from expertune.pipeline.routed import (
    load_routed_pipeline,
    read_manifest,
    router_blockers,
    set_expert_guidance,
)
from expertune.pipeline.router import TimestepRouter
from pipeline.router_support import CallLog, make_experts, out_of_band, write_manifest

EDGE = 350
PROMPT = "a red circle"


@pytest.fixture(scope="module")
def pair(tiny_model_dir, tmp_path_factory):
    """Two experts: high [350, 999] then low [0, 349] (denoising order)."""
    return make_experts(tiny_model_dir, tmp_path_factory.mktemp("pair"), (0, EDGE, 1000))


@pytest.fixture(scope="module")
def routed(pair):
    """The pair as one routed text-to-image pipeline (tests set their own scheduler)."""
    return load_routed_pipeline(list(pair))


@pytest.fixture(scope="module")
def chain(pair):
    return ExpertChain(*pair, scheduler="euler")


def _use(pipes, scheduler: str) -> None:
    from expertune.pipeline.schedulers import make_scheduler

    for pipe in pipes:
        pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)


def _pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("scheduler", ["euler", "ddim", "euler_a"])
def test_router_image_equals_the_chain_with_per_stage_guidance(routed, chain, scheduler):
    guidance = {"scales": [5.0, 8.0], "rescales": [0.0, 0.7]}
    _use([chain.base, chain.refiner, routed], scheduler)
    req = ChainRequest(
        base=StageOptions(PROMPT, guidance["scales"][0], guidance["rescales"][0]),
        refiner=StageOptions(PROMPT, guidance["scales"][1], guidance["rescales"][1]),
        steps=8,
        base_model_power=1 - EDGE / 1000,
        seed=3,
        height=64,
        width=64,
    )
    chained = chain(req)
    pipe = routed
    set_expert_guidance(pipe, **guidance)
    routed = pipe(
        PROMPT,
        num_inference_steps=8,
        guidance_scale=5.0,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(3),
    ).images[0]
    diff = int(np.abs(_pixels(routed) - _pixels(chained)).max())
    print(f"{scheduler}: router vs chain max pixel diff {diff}")
    assert diff == 0
    set_expert_guidance(pipe, scales=[5.0], rescales=[0.0])  # one guidance for both
    same = pipe(
        PROMPT,
        num_inference_steps=8,
        guidance_scale=5.0,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(3),
    ).images[0]
    assert np.abs(_pixels(same) - _pixels(chained)).max() > 0  # stage guidance mattered


def test_each_call_goes_to_the_expert_owning_its_timestep(routed):
    pipe = routed
    _use([pipe], "kdpm2")
    set_expert_guidance(pipe, scales=[1.0])
    router = pipe.unet
    assert router.config.edges == [0, EDGE, 1000] and router.config.in_channels == 4
    log = CallLog(router.experts)
    pipe(PROMPT, num_inference_steps=7, guidance_scale=1.0, height=64, width=64)
    assert out_of_band(log.calls, router.config.edges) == 0
    assert {i for i, _ in log.calls} == {0, 1}
    log.remove()
    assert any(t != int(t) for t in log.timesteps)  # KDPM2's continuous timesteps


def test_continuous_timesteps_and_a_split_batch():
    from expertune.models.tiny import tiny_unet

    torch.manual_seed(0)
    unets = [tiny_unet(), tiny_unet()]
    router = TimestepRouter.from_unets(unets, [0, 350, 1000])
    for t, i in ((349.99, 0), (350.0, 1), (-0.5, 0), (0, 0), (999.7, 1), (1000.5, 1)):
        assert router.expert_index(torch.tensor(t)) == i, t
    sample = torch.randn(3, 4, 8, 8)
    hidden = torch.randn(3, 77, unets[0].config.cross_attention_dim)
    cond = {
        "text_embeds": torch.randn(3, 32),
        "time_ids": torch.tensor([[64.0, 64, 0, 0, 64, 64]] * 3),
    }
    steps = torch.tensor([900, 100, 500])
    got = router(sample, steps, hidden, added_cond_kwargs=cond).sample
    for row, (t, i) in enumerate(((900, 1), (100, 0), (500, 1))):
        one = {k: v[row : row + 1] for k, v in cond.items()}
        want = unets[i](sample[row : row + 1], t, hidden[row : row + 1], added_cond_kwargs=one)
        torch.testing.assert_close(got[row : row + 1], want.sample, rtol=1e-5, atol=1e-5)


def test_router_saves_and_loads_with_its_edges(tmp_path):
    from expertune.models.tiny import tiny_unet

    router = TimestepRouter.from_unets([tiny_unet(), tiny_unet()], [0, 200, 1000], ["lo", "hi"])
    router.save_pretrained(tmp_path / "router")
    again = TimestepRouter.from_pretrained(tmp_path / "router")
    assert again.config.edges == [0, 200, 1000] and again.config.names == ["lo", "hi"]
    for (name, a), b in zip(router.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_manifest_loads_k_experts_sharing_one_text_side(tiny_model_dir, tmp_path):
    experts = make_experts(tiny_model_dir, tmp_path, (0, 300, 650, 1000))
    write_manifest(tmp_path, experts)
    found = read_manifest(tmp_path)
    assert found.names == ["expert0", "expert1", "expert2"]
    assert found.plan.edges == (0, 300, 650, 1000)
    pipe = load_routed_pipeline(tmp_path, img2img=True)
    assert type(pipe).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert len(pipe.unet.experts) == 3 and pipe.unet.config.names == [
        "expert2",
        "expert1",
        "expert0",
    ]
    log = CallLog(pipe.unet.experts)
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    pipe(PROMPT, image=latents, strength=0.8, num_inference_steps=10, guidance_scale=1.0)
    assert out_of_band(log.calls, pipe.unet.config.edges) == 0
    assert {i for i, _ in log.calls} == {0, 1, 2}


def test_manifest_band_must_match_the_record(tiny_model_dir, tmp_path):
    experts = make_experts(tiny_model_dir, tmp_path, (0, 500, 1000))
    write_manifest(tmp_path, experts)
    manifest = json.loads((tmp_path / "moe.json").read_text())
    manifest["experts"][0]["band"] = [400, 999]
    (tmp_path / "moe.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=r"band \[400, 999\].*records \[500, 999\]"):
        read_manifest(tmp_path)


def test_bands_with_a_gap_are_refused(tiny_model_dir, tmp_path):
    from expertune.pipeline.routed import expert_set

    high, low = make_experts(tiny_model_dir, tmp_path, (0, 500, 1000))
    record = json.loads((low / "expertune.json").read_text())
    (low / "expertune.json").write_text(json.dumps({**record, "band": [0, 399]}))
    with pytest.raises(ConfigError, match=r"leaves a gap"):
        expert_set([high, low])


def test_a_different_text_side_blocks_the_router(tiny_model_dir, tmp_path):
    from expertune.pipeline.routed import expert_set

    high, low = make_experts(tiny_model_dir, tmp_path, (0, 500, 1000))
    record = json.loads((low / "expertune.json").read_text())
    record["component_fingerprints"]["text_encoder_2"] = "another"
    (low / "expertune.json").write_text(json.dumps(record))
    assert "text_encoder_2" in router_blockers(expert_set([high, low]))


def test_mixed_guidance_layouts_are_refused(routed):
    pipe = routed
    with pytest.raises(ConfigError, match="mix values above 1"):
        set_expert_guidance(pipe, scales=[7.0, 1.0])


def test_offload_idle_keeps_one_expert_on_the_device(pair, monkeypatch):
    pipe = load_routed_pipeline(list(pair), device="cpu", offload_idle=True)
    router = pipe.unet
    moves = []
    for i, expert in enumerate(router.experts):
        real = expert.to

        def to(*args, i=i, real=real, **kwargs):
            moves.append((i, str(args[0] if args else kwargs.get("device"))))
            return real(*args, **kwargs)

        monkeypatch.setattr(expert, "to", to)
    pipe(PROMPT, num_inference_steps=4, guidance_scale=1.0, height=64, width=64)
    # the high expert comes in first, then steps aside for the low one: once each
    assert moves == [(1, "cpu"), (1, "cpu"), (0, "cpu")]
    assert router._active == 0 and router.device == torch.device("cpu")
