"""An expert folder as export reads it: its record, family, parameterisation and band.

Only the record fields every format has are read ("band", "num_train_timesteps",
"model_type", "model_family"); the parameterisation comes from the saved scheduler
config, which is what inference (and so any exported file) really runs with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from expertune.errors import ModelReferenceError
from expertune.models.family import Family, detect_family, get_family
from expertune.records.layout import EXPERT_FILE

SCHEDULER_CONFIG = "scheduler/scheduler_config.json"


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelReferenceError(f"{path} is missing; {what}") from None
    except (OSError, ValueError) as exc:
        raise ModelReferenceError(f"{path} is unreadable ({exc}); {what}") from None
    if not isinstance(data, dict):
        raise ModelReferenceError(f"{path} does not hold a JSON object; {what}")
    return data


@dataclass(frozen=True)
class ExpertFolder:
    """A finished expert's OUTPUT_DIR: a diffusers SDXL pipeline plus expertune.json."""

    path: Path
    record: dict
    family: Family
    scheduler_config: dict

    @property
    def model_type(self) -> str:
        return str(self.record.get("model_type", "full"))

    @property
    def band(self) -> tuple[int, int]:
        lo, hi = self.record["band"]
        return int(lo), int(hi)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.record["num_train_timesteps"])

    @property
    def denoising_start(self) -> float:
        """Fraction of the denoising done before this expert takes over (0: from noise)."""
        return round(1 - (self.band[1] + 1) / self.num_train_timesteps, 6)

    @property
    def denoising_end(self) -> float:
        """Fraction of the denoising done when this expert hands over (1: to the end)."""
        return round(1 - self.band[0] / self.num_train_timesteps, 6)

    @property
    def prediction_type(self) -> str:
        return str(self.scheduler_config.get("prediction_type", "epsilon"))

    @property
    def zero_terminal_snr(self) -> bool:
        return bool(self.scheduler_config.get("rescale_betas_zero_snr", False))

    def weights(self, component: str) -> Path:
        """The safetensors file of one component; a one-line error when it is missing."""
        folder = self.path / component
        files = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
        if len(files) != 1:
            found = "none" if not files else ", ".join(f.name for f in files)
            raise ModelReferenceError(
                f"{folder} should hold one .safetensors weights file (found {found}); "
                "the expert folder is incomplete: train or copy it again"
            )
        return files[0]

    def config(self, component: str) -> dict:
        return _read_json(self.path / component / "config.json", "the expert folder is incomplete")


def open_expert(path: str | Path) -> ExpertFolder:
    """Read and check an expert folder; every problem is one ModelReferenceError line."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelReferenceError(f"{folder} is not a folder; pass an expert's OUTPUT_DIR")
    if not (folder / EXPERT_FILE).is_file():
        raise ModelReferenceError(
            f"{folder} has no {EXPERT_FILE}: not an expert trained by expertune; pass the "
            "OUTPUT_DIR of a finished `expertune train` run"
        )
    record = _read_json(folder / EXPERT_FILE, "train the expert again")
    missing = [k for k in ("band", "num_train_timesteps") if k not in record]
    if missing:
        raise ModelReferenceError(
            f"{folder / EXPERT_FILE} lacks {', '.join(missing)}; train the expert again"
        )
    index = _read_json(folder / "model_index.json", "the expert folder is incomplete")
    family = get_family(detect_family(index, where=str(folder / "model_index.json")))
    scheduler = _read_json(folder / SCHEDULER_CONFIG, "the expert folder is incomplete")
    expert = ExpertFolder(folder, record, family, scheduler)
    for component in family.weight_folders:  # all present before anything is written
        expert.weights(component)
    return expert
