"""`--validation_refiner DIR`: the stage-two UNet that stage-one validation hands over to.

DIR is a finished refiner (a diffusers folder, e.g. an expertune OUTPUT_DIR after
training) or the OUTPUT_DIR of a refiner that is training right now, read from its newest
complete checkpoint. Whichever is newer wins, and it is reloaded only when it changes.
When nothing usable is there, validation renders stage one alone and says why once.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from expertune.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefinerPick:
    """What DIR offers now: a finished folder or a checkpoint, and a key that changes with it."""

    kind: str  # "folder" | "checkpoint"
    path: Path
    key: tuple

    def describe(self) -> str:
        return f"{self.path.name} ({self.kind})" if self.kind == "checkpoint" else str(self.path)


def pick_refiner(directory: Path) -> RefinerPick | str:
    """The newest usable stage two in `directory`, or a note saying why there is none."""
    from expertune.records.checkpoints import current_run, run_checkpoints

    if not directory.is_dir():
        return f"--validation_refiner {directory} does not exist (yet)"
    sealed = run_checkpoints(directory, current_run(directory))  # the run training there now
    checkpoint = sealed[-1] if sealed else None
    ckpt_step = int(checkpoint.name.split("-")[1]) if checkpoint else -1
    finished = (directory / "model_index.json").is_file() and (directory / "unet").is_dir()
    record = directory / "expertune.json"
    done_step = json.loads(record.read_text()).get("steps", 0) if record.is_file() else 1 << 62
    if finished and done_step >= ckpt_step:
        stamp = (directory / "model_index.json").stat().st_mtime_ns
        return RefinerPick("folder", directory, ("folder", stamp))
    if checkpoint is not None:
        return RefinerPick("checkpoint", checkpoint, ("checkpoint", str(checkpoint)))
    return (
        f"--validation_refiner {directory} has neither a finished pipeline "
        "(model_index.json) nor a complete checkpoint yet"
    )


class RefinerSource:
    """Hands out a StableDiffusionXLImg2ImgPipeline for the refiner, or None and a note."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self._key: tuple | None = None
        self._pipeline = None
        self._noted: set[str] = set()

    def get(self, trainer) -> tuple[object | None, str]:
        """(pipeline, what was loaded) or (None, why not); each new reason is logged once."""
        picked = pick_refiner(self.directory)
        if isinstance(picked, str):
            return None, self._note(picked)
        if picked.key != self._key:
            self._pipeline, self._key = None, None
            try:
                self._pipeline = load_refiner(picked, trainer)
            except RefinerUnusable as why:
                return None, self._note(f"--validation_refiner {picked.describe()}: {why}")
            self._key = picked.key
        return self._pipeline, picked.describe()

    def _note(self, text: str) -> str:
        note = f"{text}; validating stage one alone"
        if note not in self._noted:
            self._noted.add(note)
            log.warning(note)
        return note


class RefinerUnusable(Exception):
    """The refiner is there but cannot serve this run (internal: becomes a note)."""


def load_refiner(picked: RefinerPick, trainer):
    """An Img2Img pipeline around the picked refiner UNet, sharing the run's encoders."""
    from expertune.evaluate.live import inference_scheduler
    from expertune.pipeline.assemble import assemble_pipeline

    scheduler = inference_scheduler(trainer)
    if picked.kind == "folder":
        pipe = _from_folder(picked.path, trainer, scheduler)
    else:
        pipe = assemble_pipeline(
            trainer.components,
            _unet_from_checkpoint(picked.path, trainer),
            trainer.param,
            img2img=True,
            scheduler=scheduler,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(trainer.accelerator.device)


def _from_folder(path: Path, trainer, scheduler):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    from expertune.evaluate.live import shared_parts
    from expertune.io import no_progress_bars
    from expertune.models.family import detect_family
    from expertune.pipeline.experts import read_expert

    try:
        info = read_expert(path, "--validation_refiner")
        family = detect_family(json.loads((path / "model_index.json").read_text()))
    except (UserError, OSError, ValueError) as err:  # a reason to fall back, not to stop
        raise RefinerUnusable(str(err)) from err
    if info.parameterisation != trainer.param:
        raise RefinerUnusable(
            f"its parameterisation {info.parameterisation.as_dict()} differs from this run's "
            f"{trainer.param.as_dict()}"
        )
    same_encoders = info.encoders in (None, trainer.data.fingerprints)
    shared = shared_parts(trainer) if family == "sdxl" and same_encoders else {}
    try:
        with no_progress_bars():
            return StableDiffusionXLImg2ImgPipeline.from_pretrained(
                path, use_safetensors=True, add_watermarker=False, scheduler=scheduler, **shared
            )
    except (OSError, ValueError) as err:
        raise RefinerUnusable(f"could not be loaded ({type(err).__name__})") from err


def _unet_from_checkpoint(path: Path, trainer):
    """This run's UNet architecture with the checkpoint's tensors (full fine-tunes only)."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import load_file

    live = trainer.accelerator.unwrap_model(trainer.unet)
    try:
        weights = load_file(path / "model.safetensors")
    except (OSError, ValueError, RuntimeError) as err:
        raise RefinerUnusable(f"model.safetensors could not be read ({err})") from err
    unet = UNet2DConditionModel.from_config(live.config)
    names = {n for n, _ in unet.named_parameters()}
    if set(weights) != names:
        raise RefinerUnusable(
            f"its {len(weights)} tensors are not a full UNet of this model (a LoRA run, or "
            "another architecture); point at a finished refiner folder instead"
        )
    params = dict(unet.named_parameters())
    for name, value in weights.items():
        if params[name].shape != value.shape:
            raise RefinerUnusable(f"tensor {name} has shape {tuple(value.shape)}, not ours")
    unet.load_state_dict(weights, strict=False)
    return unet.to(dtype=next(live.parameters()).dtype).eval()
