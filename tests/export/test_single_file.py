"""Single-file export: diffusers' own readers get every weight back, images match exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from diffusers.loaders.single_file_utils import (
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    create_diffusers_clip_model_from_ldm,
)
from export_support import make_expert
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import CLIPTextModelWithProjection

from expertune.export.expert import open_expert
from expertune.export.markers import marker_tensors
from expertune.export.single_file import export_single_file

IMAGE_TOLERANCE = 1e-5  # pixels in [0, 1]; measured ~3e-6 (same weights, other strides)
PROMPT = "a red square on a blue field"


def _metadata(path):
    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata()


def _image(pipe, **kwargs):
    generator = torch.Generator().manual_seed(0)
    out = pipe(PROMPT, num_inference_steps=2, generator=generator, output_type="np", **kwargs)
    return out.images


def _open_clip_g(path, folder):
    """text_encoder_2 read by diffusers' own single-file loader from the OpenCLIP keys.

    diffusers tells the two SDXL encoders apart by width (768 vs 1280); the tiny model's
    are both 32 wide, so with CLIP-L in the same dict it would read CLIP-L twice.
    """
    state = {k: v for k, v in load_file(path).items() if k.startswith("conditioner.embedders.1.")}
    return create_diffusers_clip_model_from_ldm(
        CLIPTextModelWithProjection,
        state,
        config=str(folder),
        subfolder="text_encoder_2",
        local_files_only=True,
    )


def _round_trip(folder, path):
    """(folder image, single-file image) for a fixed seed, both through diffusers."""
    folder_pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    file_pipe = StableDiffusionXLPipeline.from_single_file(
        str(path),
        config=str(folder),
        local_files_only=True,
        text_encoder_2=_open_clip_g(path, folder),
    )
    for part in ("unet", "vae", "text_encoder", "text_encoder_2"):
        want, got = getattr(folder_pipe, part).state_dict(), getattr(file_pipe, part).state_dict()
        assert want.keys() == got.keys()
        assert all(torch.equal(want[k], got[k]) for k in want), part
    assert dict(file_pipe.scheduler.config) == dict(folder_pipe.scheduler.config)
    return _image(folder_pipe), _image(file_pipe)


def test_fp32_export_round_trips_through_from_single_file(epsilon_expert, tmp_path, offline):
    out = export_single_file(epsilon_expert, tmp_path / "base.safetensors", dtype="fp32")
    want, got = _round_trip(epsilon_expert, out.path)
    assert np.abs(want - got).max() <= IMAGE_TOLERANCE
    assert want.std() > 0.05  # a real image, not a blank one
    keys = load_file(out.path).keys()
    assert "v_pred" not in keys and "ztsnr" not in keys and out.markers == ()
    meta = _metadata(out.path)
    assert meta["modelspec.sai_model_spec"] == "1.0.0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base"
    assert meta["modelspec.prediction_type"] == "epsilon"
    assert json.loads(meta["expertune.band"]) == [200, 999]
    assert meta["modelspec.timestep_range"] == "200,999"
    assert float(meta["expertune.denoising_start"]) == 0.0
    assert float(meta["expertune.denoising_end"]) == pytest.approx(0.8)
    assert meta["modelspec.resolution"] == "64x64"


def test_v_prediction_expert_carries_both_markers_and_its_scheduler(
    vpred_expert, tmp_path, offline
):
    out = export_single_file(vpred_expert, tmp_path / "v.safetensors", dtype="fp32")
    state = load_file(out.path)
    assert state["v_pred"].numel() == 0 and state["ztsnr"].numel() == 0
    assert out.markers == ("v_pred", "ztsnr")
    assert _metadata(out.path)["modelspec.prediction_type"] == "v"
    want, got = _round_trip(vpred_expert, out.path)  # also checks the scheduler configs
    assert np.abs(want - got).max() <= IMAGE_TOLERANCE


def test_v_prediction_without_zero_snr_has_only_v_pred(tiny_model_dir, tmp_path):
    plain = make_expert(
        tiny_model_dir, tmp_path / "v", scheduler={"prediction_type": "v_prediction"}
    )
    assert set(marker_tensors(open_expert(plain))) == {"v_pred"}
    zsnr = make_expert(tiny_model_dir, tmp_path / "e", scheduler={"rescale_betas_zero_snr": True})
    assert marker_tensors(open_expert(zsnr)) == {}  # ztsnr only ever comes with v_pred


def _folder_weights(folder, part):
    name = "diffusion_pytorch_model" if part in ("unet", "vae") else "model"
    return load_file(folder / part / f"{name}.safetensors")


def _config(folder, part):
    return json.loads((folder / part / "config.json").read_text())


def test_diffusers_converters_get_every_tensor_back(epsilon_expert, tmp_path):
    state = load_file(
        export_single_file(epsilon_expert, tmp_path / "x.safetensors", dtype="fp32").path
    )
    unet = _folder_weights(epsilon_expert, "unet")
    back = convert_ldm_unet_checkpoint(state, _config(epsilon_expert, "unet"))
    assert back.keys() == unet.keys() and all(torch.equal(back[k], unet[k]) for k in unet)
    vae = _folder_weights(epsilon_expert, "vae")
    back = convert_ldm_vae_checkpoint(state, _config(epsilon_expert, "vae"))
    assert back.keys() == vae.keys() and all(torch.equal(back[k], vae[k]) for k in vae)
    clip_g = _folder_weights(epsilon_expert, "text_encoder_2")
    model = CLIPTextModelWithProjection.from_pretrained(epsilon_expert / "text_encoder_2")
    back = convert_open_clip_checkpoint(model, state, prefix="conditioner.embedders.1.model.")
    assert back.keys() == clip_g.keys() and all(torch.equal(back[k], clip_g[k]) for k in clip_g)
    # the layouts ComfyUI and A1111 read, spelled out
    g = "conditioner.embedders.1.model."
    assert torch.equal(state[g + "text_projection"], clip_g["text_projection.weight"].T)
    attn = "text_model.encoder.layers.0.self_attn."
    qkv = [clip_g[attn + f"{p}_proj.weight"] for p in "qkv"]
    assert torch.equal(state[g + "transformer.resblocks.0.attn.in_proj_weight"], torch.cat(qkv))
    clip_l = _folder_weights(epsilon_expert, "text_encoder")
    for key, value in clip_l.items():
        name = key if key.startswith("text_model.") else "text_model." + key
        assert torch.equal(state["conditioner.embedders.0.transformer." + name], value)
    assert state["first_stage_model.decoder.mid.attn_1.q.weight"].ndim == 4  # 1x1 conv
    assert "model.diffusion_model.label_emb.0.0.weight" in state
    assert "model.diffusion_model.output_blocks.1.2.conv.weight" in state  # after attention


@pytest.mark.parametrize("dtype, torch_dtype", [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_dtype_applies_to_every_weight(epsilon_expert, tmp_path, dtype, torch_dtype):
    out = export_single_file(epsilon_expert, tmp_path / f"{dtype}.safetensors", dtype=dtype)
    state = load_file(out.path)
    assert {v.dtype for v in state.values()} == {torch_dtype}
    unet = _folder_weights(epsilon_expert, "unet")
    assert torch.equal(
        state["model.diffusion_model.conv_in.weight".replace("conv_in", "input_blocks.0.0")],
        unet["conv_in.weight"].to(torch_dtype),
    )
    assert _metadata(out.path)["expertune.dtype"] == dtype


@pytest.fixture(scope="module")
def refiner_expert(tmp_path_factory):
    from expertune.models.tiny import build_tiny_sdxl_refiner

    root = tmp_path_factory.mktemp("refiner")
    built = build_tiny_sdxl_refiner(root / "model", seed=0)
    return make_expert(built, root / "refiner", band=(0, 199))


def test_refiner_family_uses_embedder_0_for_open_clip(refiner_expert, tmp_path, offline):
    out = export_single_file(refiner_expert, tmp_path / "refiner.safetensors", dtype="fp32")
    state = load_file(out.path)
    embedders = {k for k in state if k.startswith("conditioner.")}
    assert embedders and all(k.startswith("conditioner.embedders.0.model.") for k in embedders)
    meta = _metadata(out.path)
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-refiner"
    assert float(meta["expertune.denoising_start"]) == pytest.approx(0.8)
    folder_pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(refiner_expert)
    file_pipe = StableDiffusionXLImg2ImgPipeline.from_single_file(
        str(out.path), config=str(refiner_expert), local_files_only=True
    )
    want_te = folder_pipe.text_encoder_2.state_dict()
    got_te = file_pipe.text_encoder_2.state_dict()
    assert all(torch.equal(want_te[k], got_te[k]) for k in want_te)
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    want = _image(folder_pipe, image=image, strength=0.6)
    got = _image(file_pipe, image=image, strength=0.6)
    assert np.abs(want - got).max() <= IMAGE_TOLERANCE
