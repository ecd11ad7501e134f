"""Validation during training: every VALIDATION_STEPS and at the end, into
OUTPUT_DIR/validation/step-N/ (images, grids, validation.json) and TensorBoard.

What is validated depends on the expert's band:
- an expert whose band reaches the top of the schedule (stage one, a single model)
  renders the validation prompts from pure noise; stage one with `--validation_refiner`
  also renders them through stage two, beside the stage-one-only images;
- an expert whose band starts lower (stage two) cannot start from pure noise, so it is
  validated on dataset images noised to its upper band edge (`--validation_using_datasets`,
  switched on with a note when only prompts were given);
- `--validation_using_datasets` works for every expert (stage one starts at its edge, T-1);
- with `--validation_chain` (set by `expertune moe`) every expert also renders the prompts
  from pure noise through the whole chain as it stands (evaluate/chain_source.py), so a
  low-band expert is judged by the images it finishes.
With `--evaluation_type clip` every image with a prompt or caption gets a CLIP score.
With `--controlnet` the prompts are rendered by the frozen UNet and the live ControlNet,
conditioned on the first training sample's conditioning image.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from expertune.evaluate.board import Board
from expertune.evaluate.clip_score import ClipScorer
from expertune.evaluate.live import base_pipeline, inference_mode
from expertune.evaluate.records import step_dir, write_manifest
from expertune.evaluate.refiner_source import RefinerSource
from expertune.evaluate.validation_files import save_validation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationPlan:
    """What this expert's validation renders, decided once from its band."""

    prompts: tuple[str, ...]  # rendered from pure noise by this expert alone
    datasets: bool  # partial denoising of dataset images
    notes: tuple[str, ...]
    chain: tuple[str, ...] = ()  # rendered from pure noise through the whole chain


def plan_validation(cfg, band, num_train_timesteps: int) -> ValidationPlan:
    """Prompts alone only for an SDXL-family expert that starts the chain; dataset images
    for the others (an SDXL-refiner model is an Img2Img model: it always refines images);
    prompts through the chain for every expert of one with `--validation_chain`."""
    plan = _plan_alone(cfg, band, num_train_timesteps)
    if cfg.validation_chain and cfg.validation_prompts and cfg.model_family == "sdxl":
        return ValidationPlan(plan.prompts, plan.datasets, plan.notes, cfg.validation_prompts)
    return plan


def _plan_alone(cfg, band, num_train_timesteps: int) -> ValidationPlan:
    prompts, datasets = cfg.validation_prompts, cfg.validation_using_datasets
    if prompts and cfg.model_family == "sdxl-refiner":
        note = (
            "an sdxl-refiner model refines images rather than rendering from noise: the "
            f"validation prompts are not rendered; dataset images noised to t={band.hi} "
            "validate it instead"
        )
        log.warning(note)
        return ValidationPlan((), True, (note,))
    if prompts and band.hi < num_train_timesteps - 1:
        note = (
            f"this expert owns timesteps {band} and cannot start from pure noise: the "
            f"validation prompts are not rendered; dataset images noised to t={band.hi} "
            "validate it instead"
        )
        log.warning(note)
        return ValidationPlan((), True, (note,))
    return ValidationPlan(prompts, datasets, ())


def _controlnet_pipeline(trainer, controlnet):
    """The ControlNet pipeline, conditioned on training sample 0's cached conditioning
    image (the same pixels, crop included, that the ControlNet trains on)."""
    from expertune.data.conditioning_images import KEY
    from expertune.evaluate.live import controlnet_pipeline

    image = trainer.data.dataset[0][KEY].unsqueeze(0)
    return controlnet_pipeline(trainer, controlnet, image)


class ValidationCallback:
    """Runs validation when due; never changes training (see live.inference_mode)."""

    def __init__(self, cfg, clip_model_dir: Path | None = None) -> None:
        self.cfg = cfg
        self.refiner = RefinerSource(cfg.validation_refiner) if cfg.validation_refiner else None
        self.chain = None  # ChainSource, made at the first validation (it needs the trainer)
        self.scorer = ClipScorer(clip_model_dir) if clip_model_dir else None
        self.board = Board(Path(cfg.output_dir), cfg.report_to == "tensorboard")
        self.last_step: int | None = None
        self._samples = None  # the dataset images, chosen once
        self._plan: ValidationPlan | None = None

    def on_step_end(self, trainer) -> None:
        interval = self.cfg.validation_steps
        if not interval or trainer.state.step % interval:
            return
        self.validate(trainer)

    def on_train_end(self, trainer) -> None:
        if self.last_step != trainer.state.step:
            self.validate(trainer)
        self.board.close()

    def validate(self, trainer) -> dict | None:
        """Render, score and save this step's validation; returns its manifest."""
        self.last_step = step = trainer.state.step
        if not trainer.accelerator.is_main_process:
            return None
        start = time.perf_counter()
        if self._plan is None:
            self._plan = plan_validation(self.cfg, trainer.band, trainer.num_train_timesteps)
        plan = self._plan
        with inference_mode(trainer) as unet:
            refiner, refiner_note = self._refiner(trainer)
            prompts = self._prompts(trainer, unet, plan, refiner)
            chain, chain_sources = self._chain(trainer, unet, plan)
            dataset = self._datasets(trainer, unet, plan, refiner)
            clip = self._clip(prompts + chain, dataset, trainer.accelerator.device)
        folder = step_dir(trainer.output_dir, step)
        manifest = save_validation(folder, step, trainer.band, prompts + chain, dataset, clip)
        notes = [*plan.notes, *([refiner_note] if self.refiner and refiner is None else [])]
        manifest |= {
            "notes": notes,
            "refiner": refiner_note if refiner is not None else None,
            "chain": chain_sources,
            "seconds": round(time.perf_counter() - start, 3),
        }
        write_manifest(folder, manifest)
        self._to_board(folder, manifest, step)
        return manifest

    def _refiner(self, trainer):
        if self.refiner is None:
            return None, ""
        return self.refiner.get(trainer)

    def _prompts(self, trainer, unet, plan: ValidationPlan, refiner) -> list:
        if not plan.prompts:
            return []
        from expertune.evaluate.prompt_validation import PromptSettings, render_prompts

        settings = PromptSettings.from_config(self.cfg, plan.prompts)
        handover = 1.0 - trainer.band.lo / trainer.num_train_timesteps
        if getattr(trainer, "frozen_unet", None) is not None:  # --controlnet: `unet` is it
            return render_prompts(_controlnet_pipeline(trainer, unet), settings)
        return render_prompts(base_pipeline(trainer, unet), settings, refiner, handover)

    def _chain(self, trainer, unet, plan: ValidationPlan) -> tuple[list, list[str] | None]:
        """The prompts through the whole chain, and what stood at each band (ascending)."""
        if not plan.chain:
            return [], None
        from expertune.evaluate.chain_source import ChainSource, chain_pipeline
        from expertune.evaluate.prompt_validation import PromptSettings, render_through

        if self.chain is None:
            cfg = self.cfg
            own = cfg.band_plan(trainer.num_train_timesteps).band_of(trainer.band.lo)
            stand_in = cfg.init_from or trainer.checked.model_path
            self.chain = ChainSource(cfg.validation_chain, own, stand_in)
        unets, sources = self.chain.unets(trainer, unet)
        settings = PromptSettings.from_config(self.cfg, plan.chain)
        return render_through(chain_pipeline(trainer, unets), settings), sources

    def _datasets(self, trainer, unet, plan: ValidationPlan, refiner) -> list:
        if not plan.datasets:
            return []
        from expertune.evaluate.dataset_validation import DatasetSettings, DatasetValidator
        from expertune.evaluate.eval_set import validation_set_for

        cfg = self.cfg
        if self._samples is None:
            self._samples = validation_set_for(trainer.data, cfg.num_validation_images)
        settings = DatasetSettings(
            count=cfg.num_validation_images,
            steps=cfg.validation_num_inference_steps,
            guidance=cfg.validation_guidance,
            guidance_rescale=cfg.validation_guidance_rescale,
            seed=cfg.validation_seed if cfg.validation_seed is not None else cfg.seed,
            prediction_type=cfg.prediction_type,
        )
        shares_text = (
            refiner is not None and refiner.text_encoder_2 is trainer.components.text_encoder_2
        )
        validator = DatasetValidator(
            unet,
            trainer.components.vae,
            trainer.noise_scheduler,
            trainer.band,
            trainer.num_train_timesteps,
            settings,
            refiner.unet if shares_text else None,
        )
        return validator.run(self._samples)

    def _clip(self, prompts: list, dataset: list, device) -> dict:
        """CLIP scores per image, grouped by kind; {} without --evaluation_type clip."""
        if self.scorer is None:
            return {}
        groups: dict[str, tuple[list, list]] = {}
        for r in prompts:
            groups.setdefault(r.kind, ([], []))
            groups[r.kind][0].append(r.image)
            groups[r.kind][1].append(r.prompt)
        if dataset:
            groups["dataset"] = ([d.refined for d in dataset], [d.caption for d in dataset])
        return {kind: self.scorer.scores(*pair, device) for kind, pair in groups.items()}

    def _to_board(self, folder: Path, manifest: dict, step: int) -> None:
        from PIL import Image

        for name, file in manifest["grids"].items():
            with Image.open(folder / file) as image:
                self.board.image(f"validation/{name}", image.convert("RGB"), step)
        for kind, stats in manifest["clip"].items():
            self.board.scalar(f"validation/clip_score_{kind}_mean", stats["mean"], step)
        for kind, stats in manifest["psnr"].items():
            self.board.scalar(f"validation/psnr_{kind}_mean", stats["mean"], step)
        self.board.flush()
