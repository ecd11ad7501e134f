"""A UNet-shaped module over K timestep experts: every call goes to the expert whose band
owns that call's timestep (Wan 2.2's pipeline switches experts per step the same way).

Placed as the `unet` of an ordinary `StableDiffusionXLPipeline` or its Img2Img sibling, it
answers what those pipelines read from a UNet (`config.in_channels`, `sample_size`,
`time_cond_proj_dim`, `addition_time_embed_dim`, `add_embedding`, `dtype`, `device`,
attention processors), so no pipeline code is copied or patched, and every scheduler is
exact: each denoiser call, first- or second-order, is routed by the timestep it carries.

Bands are held as integer edges ``0 = e_0 < ... < e_K = T`` (schedule.bands.BandPlan);
expert i owns the integer timesteps ``[e_i, e_{i+1} - 1]`` and, for the continuous
timesteps that Heun, KDPM2 and Karras sigmas produce, ``[e_i, e_{i+1})`` (floor, then
look up). A timestep below 0 goes to expert 0 and one at or above T to the top expert.
The edges and each expert's UNet config are the router's own config, so a saved router
reloads with `TimestepRouter.from_pretrained`.
"""

from __future__ import annotations

import bisect
import math

import torch
from diffusers import ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, FrozenDict, register_to_config
from diffusers.models.attention import AttentionMixin
from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

from expertune.errors import ModelReferenceError
from expertune.schedule.bands import BandPlan

# What the SDXL pipelines read from `unet.config`: every expert must agree on these.
PIPELINE_KEYS = (
    "in_channels",
    "out_channels",
    "sample_size",
    "time_cond_proj_dim",
    "addition_time_embed_dim",
    "addition_embed_type",
    "projection_class_embeddings_input_dim",
    "cross_attention_dim",
)


class TimestepRouter(ModelMixin, AttentionMixin, ConfigMixin):
    """K expert UNets by ascending band (expert 0 is the lowest-noise one), routed by timestep."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, edges: list[int], unet_configs: list[dict], names: list[str] | None = None):
        super().__init__()
        BandPlan(tuple(edges))  # one-line ConfigError for edges that do not tile [0, T)
        if len(unet_configs) != len(edges) - 1:
            raise ValueError(f"{len(edges) - 1} bands need as many UNet configs")
        _check_agree(unet_configs, names)
        self.experts = torch.nn.ModuleList(
            UNet2DConditionModel.from_config(c) for c in unet_configs
        )
        self._offload: tuple[torch.device, torch.device] | None = None
        self._active: int | None = None

    @classmethod
    def from_unets(cls, unets, edges, names=None) -> TimestepRouter:
        """A router over loaded UNets (by ascending band), without building throwaway copies."""
        from accelerate import init_empty_weights

        configs = [_plain(unet.config) for unet in unets]
        with init_empty_weights():
            router = cls(edges=[int(e) for e in edges], unet_configs=configs, names=names)
        router.experts = torch.nn.ModuleList(unets)
        return router

    @property
    def config(self) -> FrozenDict:
        """The first expert's UNet config with the router's own keys on top (edges, names).

        Built once (the pipelines read it several times a step) and again after any change.
        """
        key = (id(self.experts[0]._internal_dict), id(self._internal_dict))
        cached = self.__dict__.get("_merged_config")
        if cached is None or cached[0] != key:
            merged = FrozenDict({**self.experts[0].config, **self._internal_dict})
            self.__dict__["_merged_config"] = cached = (key, merged)
        return cached[1]

    @property
    def plan(self) -> BandPlan:
        return BandPlan(tuple(self._internal_dict["edges"]))

    @property
    def add_embedding(self):
        return self.experts[0].add_embedding

    @property
    def encoder_hid_proj(self):
        return self.experts[0].encoder_hid_proj

    @property
    def device(self) -> torch.device:
        """Where inputs must be: the accelerator while idle experts are offloaded."""
        return self._offload[0] if self._offload else super().device

    def expert_index(self, t: float | int | torch.Tensor) -> int:
        """The expert that owns one timestep (see the module docstring for continuous t)."""
        edges = self._internal_dict["edges"]
        i = bisect.bisect_right(edges, math.floor(float(t))) - 1
        return min(max(i, 0), len(edges) - 2)

    def offload_idle(self, device, idle_device="cpu") -> None:
        """Keep only the expert in use on `device`; the others wait on `idle_device`.

        Call after moving the rest of the pipeline to `device`; `pipe.to()` afterwards moves
        every expert again (and `offload_idle(None)` turns this off).
        """
        if device is None:
            self._offload, self._active = None, None
            return
        self._offload = (torch.device(device), torch.device(idle_device))
        self._active = None
        for expert in self.experts:
            expert.to(idle_device)

    def forward(self, sample, timestep, *args, return_dict: bool = True, **kwargs):
        """Run the owning expert; a batch whose timesteps span bands is split and rejoined."""
        steps = torch.as_tensor(timestep).flatten()
        owners = [self.expert_index(t) for t in steps.tolist()]
        if len(set(owners)) == 1:
            out = self._run(owners[0], sample, timestep, *args, **kwargs)[0]
        else:
            out = self._split(owners, sample, steps, args, kwargs)
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)

    def _run(self, i: int, sample, timestep, *args, **kwargs):
        self._activate(i)
        return self.experts[i](sample, timestep, *args, return_dict=False, **kwargs)

    def _split(self, owners: list[int], sample, steps, args, kwargs):
        batch = sample.shape[0]
        if len(owners) != batch:
            raise ValueError(f"{len(owners)} timesteps for a batch of {batch}")
        out = None
        for i in sorted(set(owners)):
            rows = torch.tensor([j for j, o in enumerate(owners) if o == i], device=sample.device)
            part = self._run(
                i,
                sample[rows],
                steps.to(sample.device)[rows],
                *_rows(args, rows, batch),
                **_rows(kwargs, rows, batch),
            )[0]
            if out is None:
                out = part.new_empty((batch, *part.shape[1:]))
            out[rows] = part
        return out

    def _activate(self, i: int) -> None:
        if self._offload is None or self._active == i:
            return
        device, idle = self._offload
        if self._active is not None:
            self.experts[self._active].to(idle)
        self.experts[i].to(device)
        self._active = i


def _rows(value, rows, batch: int):
    """`value` with every tensor of `batch` rows cut to `rows` (dicts, lists, tuples inside)."""
    if isinstance(value, torch.Tensor):
        return value[rows.to(value.device)] if value.dim() and value.shape[0] == batch else value
    if isinstance(value, dict):
        return {k: _rows(v, rows, batch) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_rows(v, rows, batch) for v in value)
    return value


def _plain(config) -> dict:
    """A UNet config without diffusers' bookkeeping keys, ready to store as JSON."""
    return {k: v for k, v in dict(config).items() if not k.startswith("_")}


def _check_agree(configs: list[dict], names: list[str] | None) -> None:
    """Every expert must look the same to the pipeline (channels, conditioning sizes)."""
    names = names or [f"expert {i}" for i in range(len(configs))]
    first = configs[0]
    for name, other in zip(names[1:], configs[1:], strict=True):
        differ = [k for k in PIPELINE_KEYS if first.get(k) != other.get(k)]
        if differ:
            key = differ[0]
            raise ModelReferenceError(
                f"{name}'s UNet has {key}={other.get(key)} but {names[0]}'s has "
                f"{first.get(key)}; the experts of one router must share a UNet layout "
                "(use --chain for experts of different families)"
            )
