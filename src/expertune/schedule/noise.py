"""The training noise schedule and the parameterisation that must travel with a saved expert.

The parameterisation (prediction type, zero-terminal SNR, timestep spacing) is a property of
the trained weights, not of a run; it is written into the saved scheduler config so that
inference picks it up without the user remembering a flag.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from diffusers import DDPMScheduler

# Keys of a scheduler config that describe the noise schedule itself (betas), which the
# training scheduler inherits from the base model.
_SCHEDULE_KEYS = (
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "steps_offset",
)


@dataclass(frozen=True)
class Parameterisation:
    """What an expert predicts and on which schedule; identical for every expert of a chain."""

    prediction_type: str = "epsilon"
    rescale_betas_zero_snr: bool = False
    timestep_spacing: str = "leading"

    @classmethod
    def from_config(cls, cfg: Any) -> Parameterisation:
        """Read it from a TrainConfig (or anything with the same attribute names)."""
        return cls(
            prediction_type=cfg.prediction_type,
            rescale_betas_zero_snr=bool(cfg.rescale_betas_zero_snr),
            timestep_spacing=cfg.training_scheduler_timestep_spacing,
        )

    @classmethod
    def from_scheduler_config(cls, config: dict) -> Parameterisation:
        """Read it back from a saved scheduler config (diffusers' defaults where absent)."""
        return cls(
            prediction_type=config.get("prediction_type", "epsilon"),
            rescale_betas_zero_snr=bool(config.get("rescale_betas_zero_snr", False)),
            timestep_spacing=config.get("timestep_spacing", "leading"),
        )

    def as_dict(self) -> dict:
        return asdict(self)


def schedule_config(base_config: dict) -> dict:
    """The beta schedule of a base model's scheduler config, without any parameterisation."""
    return {k: base_config[k] for k in _SCHEDULE_KEYS if base_config.get(k) is not None}


def training_scheduler(base_config: dict, param: Parameterisation) -> DDPMScheduler:
    """A DDPM scheduler with the base model's betas and this run's parameterisation.

    Used for `add_noise`, `get_velocity` and the SNR of each timestep during training.
    """
    return DDPMScheduler(
        **schedule_config(base_config),
        clip_sample=False,
        prediction_type=param.prediction_type,
        rescale_betas_zero_snr=param.rescale_betas_zero_snr,
        timestep_spacing=param.timestep_spacing,
    )


def inference_scheduler_config(base_config: dict, param: Parameterisation) -> dict:
    """The base model's scheduler config with the trained parameterisation written in."""
    config = {k: v for k, v in base_config.items() if not k.startswith("_")}
    config.update(param.as_dict())
    return config


SDXL_BETAS = {  # what SDXL base 1.0 (and the embedded tiny models) ship with
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
}


def alphas_cumprod(base_config: dict | None, rescale_betas_zero_snr: bool) -> list[float]:
    """alpha_bar(t) of a base model's schedule (SDXL's when None), zero-terminal SNR applied
    when set: what SNR band edges are computed from."""
    sched = DDPMScheduler(
        **schedule_config(base_config or SDXL_BETAS),
        rescale_betas_zero_snr=rescale_betas_zero_snr,
    )
    return sched.alphas_cumprod.tolist()
