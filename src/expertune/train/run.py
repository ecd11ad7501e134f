"""A whole training job: setup, train, final checkpoint, pipeline and records in OUTPUT_DIR."""

from __future__ import annotations

import logging
from pathlib import Path

from expertune import __version__
from expertune.config.schema import TrainConfig
from expertune.evaluate.hooks import write_run_report
from expertune.train.loop import RunResult, Trainer
from expertune.train.outputs import EXPERT_FILE, SUMMARY_FILE, write_json_atomic
from expertune.train.publish import publish
from expertune.train.storage import saving

log = logging.getLogger(__name__)


def expert_role(cfg: TrainConfig) -> str:
    """'base' (stage one, high noise), 'refiner' (stage two, low noise) or 'single'."""
    if not cfg.refiner_training:
        return "single"
    return "base" if cfg.refiner_training_invert_schedule else "refiner"


def run_training(cfg: TrainConfig) -> RunResult:
    """Train one expert as `cfg` says and leave a loadable pipeline in OUTPUT_DIR.

    The last state is checkpointed before the pipeline is published, so a crash while
    publishing loses nothing: resuming from `latest` runs no step and publishes again.
    """
    from expertune.train.ema import ema_weights

    trainer = Trainer(cfg).setup()
    result = trainer.train()
    if trainer.saved_step != trainer.state.step:
        trainer.save_checkpoint()  # every process takes part (RNG states are gathered)
    acc = trainer.accelerator
    acc.wait_for_everyone()
    if acc.is_main_process:
        with ema_weights(trainer.ema):  # issue 9: --use_ema publishes the EMA weights
            _save_final(trainer, result)
        log.info("saved expert to %s", trainer.output_dir)
        write_run_report(trainer)
        if cfg.push_to_hub:  # issue 9: upload the published expert with a model card
            from expertune.train.hub import push_expert
            from expertune.train.outputs import read_expert_file

            push_expert(cfg, trainer.output_dir, read_expert_file(trainer.output_dir))
    acc.end_training()
    return result


def _save_final(trainer: Trainer, result: RunResult) -> None:
    """Publish the pipeline with expertune.json (and the LoRA file) as one version."""
    cfg, out = trainer.cfg, trainer.output_dir
    unet = trainer.accelerator.unwrap_model(trainer.unet)

    def write(folder: Path) -> None:
        nonlocal unet
        if cfg.lora_type == "lycoris":  # issue 9: LyCORIS adapter file, merged pipeline
            from expertune.models.lycoris import merge_lycoris, read_lycoris_config, save_lycoris

            save_lycoris(unet, folder, read_lycoris_config(cfg.lycoris_config), cfg.lycoris_config)
            unet = merge_lycoris(unet)
        elif cfg.model_type == "lora":
            from expertune.models.lora import merge_lora, save_lora

            save_lora(unet, folder)
            unet = merge_lora(unet)
        _pipeline(trainer, unet).save_pretrained(folder, safe_serialization=True)
        write_json_atomic(folder / EXPERT_FILE, expert_record(trainer, result))

    from expertune.models.load import no_progress_bars

    intact = (
        f"the previous pipeline there is intact and checkpoint-{trainer.state.step} holds "
        "the trained weights"
    )
    with no_progress_bars(), saving("the final pipeline", out, intact):
        publish(out, write)
    stats = trainer.data.stats
    write_json_atomic(
        out / SUMMARY_FILE,
        {
            "steps": result.steps,
            "wall_s": round(result.wall_s, 3),
            "samples_per_s": round(result.samples_per_s, 3),
            "samples": result.samples,
            "skipped_nonfinite_steps": trainer.state.skipped_steps,
            "cache_hits": stats.hits,
            "cache_misses": stats.misses,
            "encoder_forward_passes": stats.encoder_forward_passes,
            "cache_build_s": round(stats.seconds, 3),
            "skipped_files": [{"path": str(p), "reason": r} for p, r in trainer.data.skipped],
            "resumed_from": result.resumed_from,
            "band": [trainer.band.lo, trainer.band.hi],
        },
    )


def _pipeline(trainer: Trainer, unet):
    """The base model's parts, the trained UNet, a scheduler carrying the parameterisation.

    An SDXL expert is saved as a StableDiffusionXLPipeline; an SDXL-refiner expert as the
    StableDiffusionXLImg2ImgPipeline its family loads with (no text_encoder/tokenizer,
    `requires_aesthetics_score`), as stabilityai's refiner is laid out. Pipeline settings
    the source model_index.json gives (e.g. `force_zeros_for_empty_prompt`) are kept.
    """
    import diffusers

    from expertune.models.family import get_family
    from expertune.schedule.noise import inference_scheduler_config

    c = trainer.components
    scheduler_cls = getattr(diffusers, c.scheduler_config.get("_class_name", ""), None)
    if scheduler_cls is None:
        scheduler_cls = diffusers.EulerDiscreteScheduler
    scheduler = scheduler_cls.from_config(
        inference_scheduler_config(c.scheduler_config, trainer.param)
    )
    family = get_family(c.family)
    settings = _source_settings(c.model_path)
    if family.requires_aesthetics_score:
        cls = diffusers.StableDiffusionXLImg2ImgPipeline
        settings["requires_aesthetics_score"] = True
    else:
        cls = diffusers.StableDiffusionXLPipeline
    return cls(
        vae=c.vae,
        text_encoder=c.text_encoder,
        text_encoder_2=c.text_encoder_2,
        tokenizer=c.tokenizer,
        tokenizer_2=c.tokenizer_2,
        unet=unet,
        scheduler=scheduler,
        add_watermarker=False,
        **settings,
    )


def _source_settings(model_path: Path) -> dict:
    """`force_zeros_for_empty_prompt` of the source model_index.json, when it says."""
    from expertune.models.load import read_model_index

    index = read_model_index(model_path)
    key = "force_zeros_for_empty_prompt"
    return {key: bool(index[key])} if key in index else {}


def expert_record(trainer: Trainer, result: RunResult) -> dict:
    """Contents of expertune.json: enough to chain this expert with its siblings.

    `encoder_fingerprints` are the cache's (VAE, whole text side); `component_fingerprints`
    one per part, so a base and a refiner of another family share the parts they have in
    common at inference (pipeline/sharing.py).
    """
    from expertune.pipeline.sharing import RECORD_KEY, component_fingerprints

    cfg = trainer.cfg
    parts = component_fingerprints(trainer.components, vae=trainer.data.fingerprints.get("vae"))
    return {
        "format": 1,
        "expertune_version": __version__,
        "role": expert_role(cfg),
        "model_family": cfg.model_family,
        "model_type": cfg.model_type,
        "base_model": cfg.pretrained_model_name_or_path,
        "band": [trainer.band.lo, trainer.band.hi],
        "num_train_timesteps": trainer.num_train_timesteps,
        "refiner_training": cfg.refiner_training,
        "refiner_training_strength": cfg.refiner_training_strength,
        "refiner_training_invert_schedule": cfg.refiner_training_invert_schedule,
        "handover_fraction": round(1 - cfg.refiner_training_strength, 6),
        "parameterisation": trainer.param.as_dict(),
        "encoder_fingerprints": trainer.data.fingerprints,
        RECORD_KEY: parts,
        "steps": result.steps,
        "weights": "ema" if cfg.use_ema else "trained",  # issue 9: --use_ema publishes EMA
    }
