"""K experts as one ordinary diffusers SDXL pipeline whose `unet` is a TimestepRouter.

    from expertune.pipeline.routed import load_routed_pipeline, set_expert_guidance
    pipe = load_routed_pipeline("OUTPUT_ROOT")           # a moe.json manifest, or
    pipe = load_routed_pipeline(["high", "mid", "low"])  # expert folders in any order
    set_expert_guidance(pipe, scales=[7.0, 5.0, 3.0])    # optional, denoising order
    image = pipe("a red circle", num_inference_steps=40).images[0]

The VAE, text encoders and tokenizers are loaded once, from the first expert, and only
when every expert records the same fingerprint for each of them (sharing.py); otherwise,
or when an expert has another conditioning layout (an SDXL-refiner-family expert), the
router cannot hold the set and `router_blockers` says why (generate then uses the chain).
Lists given to and returned by this module are in denoising order (highest band first);
the router itself holds experts by ascending band, as BandPlan does.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from expertune.errors import ConfigError, ModelReferenceError
from expertune.pipeline.experts import ExpertInfo, check_same_parameterisation, read_expert
from expertune.pipeline.sharing import PARTS, shared_parts
from expertune.schedule.bands import Band, BandPlan

MANIFEST = "moe.json"


@dataclass(frozen=True)
class Expert:
    """One member of a set: a name for messages, its folder's record and its band."""

    name: str
    info: ExpertInfo
    band: Band


@dataclass(frozen=True)
class ExpertSet:
    """Experts in denoising order whose bands tile ``[0, T)`` exactly."""

    experts: tuple[Expert, ...]
    num_train_timesteps: int

    def __post_init__(self) -> None:
        _check_tiling(self.experts, self.num_train_timesteps)
        check_same_parameterisation([e.info for e in self.experts])

    def __len__(self) -> int:
        return len(self.experts)

    @property
    def plan(self) -> BandPlan:
        """The band plan the experts' bands make (edges ascending)."""
        lows = sorted(e.band.lo for e in self.experts)
        return BandPlan((*lows, self.num_train_timesteps))

    @property
    def parameterisation(self):
        return self.experts[0].info.parameterisation

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.experts]

    def describe(self) -> str:
        """'high [600, 999] -> low [0, 599]' for the user."""
        return " -> ".join(f"{e.name} {e.band}" for e in self.experts)


def read_manifest(root: str | Path) -> ExpertSet:
    """The experts an `expertune moe` OUTPUT_ROOT lists in its moe.json (or that file itself)."""
    root = Path(root)
    path = root if root.suffix == ".json" else root / MANIFEST
    if not path.is_file():
        raise ConfigError(
            f"--moe {root} holds no {MANIFEST}; pass the OUTPUT_ROOT of a finished "
            "`expertune moe` run (or use --expert DIR for each expert folder)"
        )
    try:
        manifest = json.loads(path.read_text())
        entries = manifest["experts"]
        experts = [_manifest_expert(path, i, entry) for i, entry in enumerate(entries)]
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno} is not valid JSON ({err.msg})") from None
    except (KeyError, TypeError, IndexError, ValueError) as err:
        raise ConfigError(
            f"{path} is not an expertune manifest ({type(err).__name__}: {err}); expected "
            '{"experts": [{"name": ..., "band": [lo, hi], "path": ...}, ...]}'
        ) from None
    if not experts:
        raise ConfigError(f"{path} lists no experts")
    _check_manifest_parameterisation(path, manifest.get("parameterisation"), experts)
    return ExpertSet(tuple(experts), experts[0].info.num_train_timesteps)


def expert_set(folders: Sequence[str | Path], what: str = "--expert") -> ExpertSet:
    """Expert folders in any order, put in denoising order by the bands their records hold."""
    experts = []
    for folder in folders:
        info = read_expert(folder, what)
        if info.band is None:
            raise ConfigError(
                f"{what} {folder} records no band (no expertune.json); pass expert folders "
                "that expertune trained, or --model DIR for a single model"
            )
        experts.append(Expert(Path(folder).name or str(folder), info, info.band))
    experts.sort(key=lambda e: e.band.lo, reverse=True)
    totals = {e.info.num_train_timesteps for e in experts}
    if len(totals) > 1:
        raise ConfigError(
            f"{what} folders disagree on num_train_timesteps ({sorted(totals)}); experts of "
            "one model share a noise schedule"
        )
    return ExpertSet(tuple(experts), totals.pop())


def with_edges(experts: ExpertSet, edges: Sequence[int]) -> ExpertSet:
    """The same experts handing over at other edges (the pair's --base-model-power)."""
    plan = BandPlan(tuple(edges))
    if len(plan) != len(experts):
        raise ValueError(f"{len(plan)} bands for {len(experts)} experts")
    bands = reversed(plan.bands)
    return ExpertSet(
        tuple(Expert(e.name, e.info, b) for e, b in zip(experts.experts, bands, strict=True)),
        experts.num_train_timesteps,
    )


def router_blockers(experts: ExpertSet) -> str | None:
    """Why one pipeline cannot hold these experts (None when it can)."""
    first = experts.experts[0]
    for other in experts.experts:
        if other.info.family != "sdxl":
            return f"{other.name} is an {other.info.family} model (another conditioning layout)"
    for other in experts.experts[1:]:
        have = set(shared_parts(first.info, other.info))
        missing = [p for p in PARTS if p not in have]
        if missing:
            return (
                f"{other.name} does not record the same {missing[0]} as {first.name}, so "
                "they cannot share one text side and VAE"
            )
    return None


def load_routed_pipeline(
    source: str | Path | Sequence[str | Path] | ExpertSet,
    *,
    scheduler: str | None = None,
    img2img: bool = False,
    device=None,
    offload_idle: bool = False,
    torch_dtype=None,
):
    """An ordinary StableDiffusionXLPipeline (or Img2Img) whose `unet` routes K experts.

    `source`: an OUTPUT_ROOT (or its moe.json), a list of expert folders, or an ExpertSet.
    `scheduler`: a name from schedulers.py (default: the experts' saved scheduler).
    `offload_idle`: keep only the expert in use on `device`, the others in CPU memory.
    """
    experts = _as_set(source)
    why = router_blockers(experts)
    if why is not None:
        raise ModelReferenceError(f"the router cannot hold these experts: {why}; use the chain")
    if scheduler is not None:
        from expertune.pipeline.schedulers import check_scheduler

        check_scheduler(scheduler, experts.parameterisation)
    from expertune.models.load import no_progress_bars

    with no_progress_bars():
        pipe = _assemble(experts, scheduler, img2img, torch_dtype)
    _place(pipe, device, offload_idle)
    return pipe


def set_expert_guidance(pipe, scales: Sequence[float], rescales: Sequence[float] | None = None):
    """Give each expert its own guidance scale and rescale (denoising order) in `pipe`.

    Before each denoiser call, a forward pre-hook on the router sets the pipeline's
    `_guidance_scale` and `_guidance_rescale` (the attributes diffusers' own
    dynamic-guidance callbacks set) to the values of the expert that call goes to; the
    pipeline reads them right after the call, so every call, first- or second-order, is
    guided as its expert asks. Classifier-free guidance is on for the whole run or off
    (the batch layout is fixed at the start), so all scales must lie on one side of 1.
    Returns the hook handle (`.remove()` undoes it); calling again replaces it.
    """
    router = pipe.unet
    k = len(router.experts)
    scales = _per_expert(scales, k, "guidance scales")
    rescales = _per_expert(rescales if rescales is not None else [0.0], k, "guidance rescales")
    if len({s > 1 for s in scales}) > 1:
        raise ConfigError(
            f"guidance scales {list(scales)} mix values above 1 (classifier-free guidance) "
            "and at most 1 (none); one pipeline runs one layout: make them all > 1, or "
            "use the chain"
        )
    old = getattr(router, "_expertune_guidance", None)
    if old is not None:
        old.remove()
    hook = _ExpertGuidance(pipe, scales[::-1], rescales[::-1])
    handle = router.register_forward_pre_hook(hook, with_kwargs=True)
    router._expertune_guidance = handle
    return handle


class _ExpertGuidance:
    """The pre-hook of set_expert_guidance; values by ascending band, as the router holds."""

    def __init__(self, pipe, scales, rescales):
        self._pipe = weakref.ref(pipe)
        self.scales, self.rescales = list(scales), list(rescales)

    def __call__(self, router, args, kwargs):
        import torch

        pipe = self._pipe()
        if pipe is None:
            return None
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        owners = {router.expert_index(t) for t in torch.as_tensor(timestep).flatten().tolist()}
        values = {(self.scales[i], self.rescales[i]) for i in owners}
        if len(values) > 1:
            raise ValueError("one batch spans experts with different guidance")
        scale, rescale = values.pop()
        if (pipe._guidance_scale > 1) != (scale > 1):
            raise ConfigError(
                f"the call's guidance_scale={pipe._guidance_scale} turns classifier-free "
                f"guidance {'on' if pipe._guidance_scale > 1 else 'off'} but the experts' "
                f"scales are {self.scales[::-1]}; pass one of them as guidance_scale"
            )
        pipe._guidance_scale, pipe._guidance_rescale = scale, rescale
        return None


def router_of(pipe):
    """The TimestepRouter inside a routed pipeline (a one-line error for any other)."""
    from expertune.pipeline.router import TimestepRouter

    if not isinstance(pipe.unet, TimestepRouter):
        raise ConfigError("this pipeline's unet is not an expertune TimestepRouter")
    return pipe.unet


def _assemble(experts: ExpertSet, scheduler: str | None, img2img: bool, torch_dtype):
    from diffusers import (
        StableDiffusionXLImg2ImgPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )

    from expertune.pipeline.router import TimestepRouter

    first = experts.experts[0]
    kwargs = {"use_safetensors": True, "torch_dtype": torch_dtype}
    pipe = StableDiffusionXLPipeline.from_pretrained(
        first.info.path, add_watermarker=False, **kwargs
    )
    unets = [pipe.unet] + [
        UNet2DConditionModel.from_pretrained(e.info.path, subfolder="unet", **kwargs)
        for e in experts.experts[1:]
    ]
    router = TimestepRouter.from_unets(unets[::-1], experts.plan.edges, names=experts.names[::-1])
    components = {**pipe.components, "unet": router}
    if scheduler is not None:
        from expertune.pipeline.schedulers import make_scheduler

        components["scheduler"] = make_scheduler(scheduler, pipe.scheduler.config)
    cls = StableDiffusionXLImg2ImgPipeline if img2img else StableDiffusionXLPipeline
    routed = cls(**components, add_watermarker=False)
    routed.set_progress_bar_config(leave=False)
    return routed


def _place(pipe, device, offload_idle: bool) -> None:
    """Move the pipeline to `device`; with `offload_idle` only the active expert goes there."""
    if offload_idle and device is None:
        raise ConfigError("offload_idle needs a device for the active expert (e.g. 'cuda')")
    if device is None:
        return
    for name, part in pipe.components.items():
        if hasattr(part, "to") and not (offload_idle and name == "unet"):
            part.to(device)
    if offload_idle:
        pipe.unet.offload_idle(device)


def _as_set(source) -> ExpertSet:
    if isinstance(source, ExpertSet):
        return source
    if isinstance(source, str | Path):
        return read_manifest(source)
    return expert_set(list(source))


def _per_expert(values: Sequence[float], k: int, what: str) -> list[float]:
    values = [float(v) for v in values]
    if len(values) == 1:
        return values * k
    if len(values) != k:
        raise ConfigError(f"{len(values)} {what} for {k} experts; give one value or {k}")
    return values


def _manifest_expert(manifest: Path, i: int, entry: dict) -> Expert:
    name = str(entry.get("name", f"expert {i}"))
    folder = Path(entry["path"])
    folder = folder if folder.is_absolute() else manifest.parent / folder
    info = read_expert(folder, f"{manifest.name} expert {name}")
    lo, hi = (int(v) for v in entry["band"])
    band = Band(lo, hi)
    if info.band is not None and info.band != band:
        raise ConfigError(
            f"{manifest} gives {name} the band {band} but {folder}/expertune.json records "
            f"{info.band}; run `expertune moe` again or fix the manifest"
        )
    return Expert(name, info, band)


def _check_manifest_parameterisation(path: Path, wanted: dict | None, experts) -> None:
    if not wanted:
        return
    have = experts[0].info.parameterisation.as_dict()
    differ = {k: v for k, v in wanted.items() if k in have and have[k] != v}
    if differ:
        key = next(iter(differ))
        raise ConfigError(
            f"{path} says {key}={differ[key]} but the experts' saved scheduler has "
            f"{key}={have[key]}; the saved scheduler config is what the experts were trained on"
        )


def _check_tiling(experts: Sequence[Expert], total: int) -> None:
    """Bands must cover ``[0, T)`` with no gap and no overlap."""
    ordered = sorted(experts, key=lambda e: e.band.lo)
    expected = 0
    for e in ordered:
        if e.band.lo != expected:
            what = "overlaps the band below" if e.band.lo < expected else "leaves a gap below"
            raise ConfigError(
                f"{e.name} owns {e.band}, which {what} it (expected it to start at "
                f"{expected}); the experts' bands must tile [0, {total - 1}] exactly"
            )
        expected = e.band.hi + 1
    if expected != total:
        raise ConfigError(
            f"the experts' bands end at {expected - 1}, not {total - 1}: no expert owns "
            f"[{expected}, {total - 1}]; add the missing expert"
        )
