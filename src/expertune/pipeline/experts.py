"""What a saved expert folder says about itself, read without loading any weights."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from expertune.errors import ConfigError, ModelReferenceError
from expertune.schedule.bands import Band
from expertune.schedule.noise import Parameterisation


@dataclass(frozen=True)
class ExpertInfo:
    """A saved expert: its folder, parameterisation and (if expertune trained it) its record."""

    path: Path
    parameterisation: Parameterisation
    record: dict | None

    @property
    def strength(self) -> float | None:
        """The refiner's share of T in a two-band plan (format 2), or the recorded
        --refiner_training_strength (format 1); None when the record says neither."""
        record = self.record or {}
        edges = (record.get("plan") or {}).get("edges")
        if isinstance(edges, list) and len(edges) == 3:
            return edges[1] / edges[2]
        if record.get("refiner_training"):
            return float(record["refiner_training_strength"])
        return None

    @property
    def band(self) -> Band | None:
        """The training timesteps it owns, from its record's "band" (formats 1 and 2 alike)."""
        band = (self.record or {}).get("band")
        if band is None:
            return None
        try:
            return Band(int(band[0]), int(band[1]))
        except (TypeError, ValueError, IndexError):
            raise ConfigError(
                f"{self.path}/expertune.json has band {band!r}; expected [lo, hi] with "
                "0 <= lo <= hi (train the expert again or fix the record)"
            ) from None

    @property
    def num_train_timesteps(self) -> int:
        """T of its noise schedule: the record's value, else the scheduler config's, else 1000."""
        value = (self.record or {}).get("num_train_timesteps")
        if value is None:
            sched = self.path / "scheduler" / "scheduler_config.json"
            config = json.loads(sched.read_text()) if sched.is_file() else {}
            value = config.get("num_train_timesteps", 1000)
        return int(value)

    @property
    def encoders(self) -> dict | None:
        return (self.record or {}).get("encoder_fingerprints")

    @property
    def family(self) -> str:
        """The model family (sdxl or sdxl-refiner) its model_index.json describes; a one-line
        ModelReferenceError for anything else."""
        from expertune.models.family import detect_family

        index = json.loads((self.path / "model_index.json").read_text())
        return detect_family(index, where=f"{self.path}/model_index.json")


def read_expert(path: str | Path, what: str) -> ExpertInfo:
    """Read `model_index.json`, the scheduler config and expertune.json of an expert folder."""
    path = Path(path)
    if not (path / "model_index.json").is_file():
        raise ModelReferenceError(
            f"{what} {path} is not a diffusers pipeline folder (no model_index.json); "
            "pass the OUTPUT_DIR of a finished expertune run or a diffusers SDXL folder"
        )
    sched = path / "scheduler" / "scheduler_config.json"
    config = json.loads(sched.read_text()) if sched.is_file() else {}
    record = _read_record(path / "expertune.json", what)
    _check_safetensors(path, what)
    return ExpertInfo(path, Parameterisation.from_scheduler_config(config), record)


def _read_record(record_path: Path, what: str) -> dict | None:
    """expertune.json, or None when absent; a damaged one is a one-line error."""
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelReferenceError(
            f"{what} {record_path} is damaged ({type(err).__name__}); restore it from the "
            "run's .pipeline/current/expertune.json or delete it to load the folder as a "
            "plain diffusers model"
        ) from None
    if not isinstance(record, dict):
        raise ModelReferenceError(
            f"{what} {record_path} must hold one JSON object; delete it to load the folder "
            "as a plain diffusers model"
        )
    return record


def _check_safetensors(path: Path, what: str) -> None:
    """The UNet's weights exist as safetensors: expertune never unpickles .bin files."""
    unet = path / "unet"
    if unet.is_dir() and not any(unet.glob("*.safetensors")) and any(unet.glob("*.bin")):
        raise ModelReferenceError(
            f"{what} {path}: the UNet's weights are only in .bin (pickle) form, which "
            "expertune does not load; convert them with diffusers' save_pretrained("
            "safe_serialization=True)"
        )


def check_same_parameterisation(experts: list[ExpertInfo]) -> Parameterisation:
    """All experts of a chain must share one parameterisation; say which differ if not."""
    first = experts[0]
    for other in experts[1:]:
        if other.parameterisation != first.parameterisation:
            raise ConfigError(
                f"experts disagree on parameterisation: {first.path} has "
                f"{first.parameterisation.as_dict()} but {other.path} has "
                f"{other.parameterisation.as_dict()}; train both with the same "
                "--prediction_type, --rescale_betas_zero_snr and "
                "--training_scheduler_timestep_spacing"
            )
    return first.parameterisation
