"""What a checkpoint says about itself: modelspec metadata and ComfyUI's marker tensors.

ComfyUI's SDXL loader (comfy/supported_models.py, `SDXL.model_type`) reads the
parameterisation from the state dict, not from metadata: an empty tensor named `v_pred`
means v-prediction, and `ztsnr` beside it zero-terminal SNR. The modelspec keys are
Stability AI's ModelSpec (https://github.com/Stability-AI/ModelSpec), which kohya's
tools and several UIs read; `expertune.*` keys carry the expert's band and handover.
"""

from __future__ import annotations

import json

import torch

from expertune import __version__
from expertune.export.expert import ExpertFolder

V_PRED = "v_pred"
ZTSNR = "ztsnr"
SPEC_VERSION = "1.0.0"
IMPLEMENTATION = "https://github.com/Stability-AI/generative-models"
ARCHITECTURES = {
    "sdxl": "stable-diffusion-xl-v1-base",
    "sdxl-refiner": "stable-diffusion-xl-v1-refiner",
}


def marker_tensors(expert: ExpertFolder) -> dict[str, torch.Tensor]:
    """`v_pred` for a v-prediction expert, plus `ztsnr` when its betas reach zero SNR."""
    markers = {}
    if expert.prediction_type == "v_prediction":
        markers[V_PRED] = torch.tensor([])
        if expert.zero_terminal_snr:
            markers[ZTSNR] = torch.tensor([])
    return markers


def modelspec(expert: ExpertFolder, *, adapter: str | None = None, resolution: int = 1024) -> dict:
    """Header metadata (all strings, as safetensors requires) for a file of `expert`."""
    lo, hi = expert.band
    architecture = ARCHITECTURES[expert.family.name] + (f"/{adapter}" if adapter else "")
    return {
        "modelspec.sai_model_spec": SPEC_VERSION,
        "modelspec.architecture": architecture,
        "modelspec.implementation": IMPLEMENTATION,
        "modelspec.title": expert.record.get("name") or expert.path.name,
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.prediction_type": "v" if expert.prediction_type == "v_prediction" else "epsilon",
        "modelspec.timestep_range": f"{lo},{hi}",
        "expertune.version": __version__,
        "expertune.band": json.dumps([lo, hi]),
        "expertune.num_train_timesteps": str(expert.num_train_timesteps),
        "expertune.denoising_start": str(expert.denoising_start),
        "expertune.denoising_end": str(expert.denoising_end),
        "expertune.prediction_type": expert.prediction_type,
        "expertune.zero_terminal_snr": json.dumps(expert.zero_terminal_snr),
        "expertune.model_family": expert.family.name,
    }
