"""The samplers `--scheduler` names, as diffusers classes plus settings, and whether each can
sample on the experts' trained parameterisation.

A scheduler is always built from the expert's saved scheduler config (its betas, prediction
type, zero-terminal SNR and spacing), never from flags. diffusers' `from_config` drops keys
a class does not take, so a scheduler without `rescale_betas_zero_snr` would silently sample
on the ordinary schedule; `check_scheduler` refuses that in one line instead. Whether a
class takes the key is read from its signature, not from a list kept here.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from expertune.errors import ConfigError

if TYPE_CHECKING:  # schedule.noise imports diffusers; the names table must not (--help)
    from expertune.schedule.noise import Parameterisation


@dataclass(frozen=True)
class SchedulerSpec:
    """A diffusers scheduler class by name, the settings that make the named sampler, and the
    extra package it needs (None when diffusers' own dependencies suffice)."""

    class_name: str
    kwargs: dict = field(default_factory=dict)
    needs: str | None = None


SCHEDULERS: dict[str, SchedulerSpec] = {
    "unipc": SchedulerSpec("UniPCMultistepScheduler"),
    "euler": SchedulerSpec("EulerDiscreteScheduler"),
    "euler_a": SchedulerSpec("EulerAncestralDiscreteScheduler"),
    "ddim": SchedulerSpec("DDIMScheduler"),
    "ddpm": SchedulerSpec("DDPMScheduler"),
    "dpmpp_2m": SchedulerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}
    ),
    "dpmpp_2m_karras": SchedulerSpec(
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "dpmpp_2m_sde": SchedulerSpec(
        "DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "solver_order": 2}
    ),
    "dpmpp_sde": SchedulerSpec("DPMSolverSDEScheduler", needs="torchsde"),
    "heun": SchedulerSpec("HeunDiscreteScheduler"),
    "kdpm2": SchedulerSpec("KDPM2DiscreteScheduler"),
    "kdpm2_a": SchedulerSpec("KDPM2AncestralDiscreteScheduler"),
    "deis": SchedulerSpec("DEISMultistepScheduler"),
    "lms": SchedulerSpec("LMSDiscreteScheduler", needs="scipy"),
    "pndm": SchedulerSpec("PNDMScheduler"),
}

SCHEDULER_NAMES: tuple[str, ...] = tuple(SCHEDULERS)


def spec(name: str) -> SchedulerSpec:
    """The spec called `name`; a ConfigError listing the known names otherwise."""
    try:
        return SCHEDULERS[name]
    except KeyError:
        raise ConfigError(
            f"--scheduler {name} is not one expertune knows; use one of {', '.join(SCHEDULERS)}"
        ) from None


def check_scheduler(name: str, param: Parameterisation) -> None:
    """Refuse, in one line, a scheduler that cannot sample on `param` or cannot be imported.

    Needs no torch model: it reads the class signature only (diffusers imports lazily).
    """
    wanted = spec(name)
    if wanted.needs is not None:
        _require(wanted.needs, name)
    cls = _scheduler_class(wanted)
    takes = inspect.signature(cls.__init__).parameters
    if param.rescale_betas_zero_snr and "rescale_betas_zero_snr" not in takes:
        raise ConfigError(
            f"--scheduler {name} ({wanted.class_name}) cannot sample a zero-terminal-SNR "
            "model (the experts were trained with --rescale_betas_zero_snr); pick one of "
            f"{', '.join(zero_snr_schedulers())}"
        )
    if "timestep_spacing" not in takes:
        raise ConfigError(
            f"--scheduler {name} ({wanted.class_name}) has no timestep_spacing and cannot "
            f"honour the experts' timestep_spacing={param.timestep_spacing}; pick another"
        )


def zero_snr_schedulers() -> list[str]:
    """The names whose class takes `rescale_betas_zero_snr`."""
    out = []
    for name, one in SCHEDULERS.items():
        if one.needs is not None and not _installed(one.needs):
            continue
        params = inspect.signature(_scheduler_class(one).__init__).parameters
        if "rescale_betas_zero_snr" in params:
            out.append(name)
    return out


def make_scheduler(name: str, config: dict):
    """The scheduler `name` on the saved scheduler `config` (betas + parameterisation)."""
    from expertune.schedule.noise import Parameterisation

    param = Parameterisation.from_scheduler_config(config)
    check_scheduler(name, param)
    wanted = spec(name)
    return _scheduler_class(wanted).from_config(dict(config), **wanted.kwargs)


def _scheduler_class(one: SchedulerSpec):
    import diffusers

    return getattr(diffusers, one.class_name)


def _installed(package: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(package) is not None


def _require(package: str, name: str) -> None:
    if not _installed(package):
        raise ConfigError(
            f"--scheduler {name} needs the {package} package: pip install {package} "
            "(or pick another --scheduler)"
        )
