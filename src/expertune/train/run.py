"""A whole training job: setup, train, final checkpoint, pipeline and records in OUTPUT_DIR."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from expertune import __version__
from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError
from expertune.pipeline.assemble import assemble_pipeline
from expertune.records.expert import expert_role
from expertune.train.loop import RunResult, Trainer
from expertune.train.output_lock import hold_output_lock
from expertune.train.outputs import EXPERT_FILE, SUMMARY_FILE, write_json_atomic
from expertune.train.preflight import preflight
from expertune.train.publish import publish
from expertune.train.storage import saving

log = logging.getLogger(__name__)


def run_training(
    cfg: TrainConfig,
    callbacks: Sequence = (),  # train.callbacks.TrainingCallback, run after each step
    hold_out: Callable | None = None,  # items -> indices kept out of training (eval split)
    on_published: Callable | None = None,  # called with the trainer once the pipeline is out
) -> RunResult:
    """Train one expert as `cfg` says and leave a loadable pipeline in OUTPUT_DIR.

    The last state is checkpointed before the pipeline is published, so a crash while
    publishing loses nothing: resuming from `latest` runs no step and publishes again.
    """
    from expertune import startup_gc
    from expertune.train.ema import ema_weights

    startup_gc.settle()  # the libraries are imported: they are permanent from here on
    checked = preflight(cfg)  # every refusal comes before anything is written
    with hold_output_lock(Path(cfg.output_dir)):  # a second run on OUTPUT_DIR is refused
        trainer = Trainer(cfg, callbacks=callbacks, hold_out=hold_out).setup(checked)
        result = trainer.train()
        if trainer.saved_step != trainer.state.step:
            trainer.save_checkpoint()  # every process takes part (RNG states are gathered)
        acc = trainer.accelerator
        whole = gather_unet(trainer)  # a collective under FSDP / ZeRO-3: every rank calls it
        acc.wait_for_everyone()
        if acc.is_main_process:
            with ema_weights(trainer.ema):  # --use_ema publishes the EMA weights
                _save_final(trainer, result, whole)
            log.info("saved expert to %s", trainer.output_dir)
            if on_published is not None:
                on_published(trainer)
            if cfg.push_to_hub:  # upload the published expert with a model card
                from expertune.train.hub import push_expert
                from expertune.train.outputs import read_expert_file

                push_expert(cfg, trainer.output_dir, read_expert_file(trainer.output_dir))
        acc.wait_for_everyone()  # no rank leaves before the expert is published (moe's next
        # run may start from it, or check that it is finished). Not acc.end_training(): that
        # also destroys the process group, which the next run of this process still needs
        # (the CLI ends it when the command is done).
        for tracker in acc.trackers:
            tracker.finish()
    return result


def gather_unet(trainer: Trainer):
    """The trained UNet whole, on the main process (None elsewhere); every rank calls it.

    Under DDP or one process every rank holds the whole model: the unwrapped module itself
    (nothing is copied). Under FSDP or DeepSpeed ZeRO-3 a rank holds only shards, so the
    full state dict is gathered with accelerate's `get_state_dict` (a collective) and
    loaded on rank 0 into a fresh UNet of the same config, with the same LoRA adapter.
    """
    from expertune.train.checkpoint import shards_parameters

    acc = trainer.accelerator
    unwrapped = acc.unwrap_model(trainer.unet)
    if not shards_parameters(acc):
        return unwrapped if acc.is_main_process else None
    if trainer.cfg.lora_type == "lycoris" or trainer.ema is not None or trainer.cfg.controlnet:
        raise ConfigError(
            "publishing a sharded (FSDP / ZeRO-3) run with LyCORIS, --use_ema or --controlnet "
            "is not supported yet; train it with DDP (plain `accelerate launch`)"
        )
    state = acc.get_state_dict(trainer.unet)
    if not acc.is_main_process:
        return None
    whole = _plain_class(unwrapped).from_config(unwrapped.config)
    peft = getattr(unwrapped, "peft_config", None)
    if peft:
        from expertune.models.lora import ADAPTER

        whole.add_adapter(peft[ADAPTER], adapter_name=ADAPTER)
    whole.load_state_dict(state, strict=True)
    return whole


def _plain_class(module) -> type:
    """The model's own class: FSDP2's `fully_shard` swaps in an `FSDP<Name>` subclass."""
    from torch.distributed.fsdp import FSDPModule

    return next(c for c in type(module).__mro__ if not issubclass(c, FSDPModule))


def _save_final(trainer: Trainer, result: RunResult, unet=None) -> None:
    """Publish the pipeline with expertune.json (and the LoRA file) as one version.

    `unet`: the whole trained UNet (gather_unet); the unwrapped model when not given.
    """
    cfg, out = trainer.cfg, trainer.output_dir
    unet = unet if unet is not None else trainer.accelerator.unwrap_model(trainer.unet)

    if cfg.base_model_precision != "no_change":  # issue 9: merge into the unquantised base
        from expertune.train.setup import unquantised_copy

        unet = unquantised_copy(cfg, trainer.components, trainer.checked.parent, unet)

    def write(folder: Path) -> None:
        nonlocal unet
        if cfg.controlnet:  # the trained ControlNet beside the unchanged base pipeline
            from expertune.models.controlnet import save_controlnet

            save_controlnet(unet, folder, lora=cfg.model_type == "lora")
            unet = trainer.components.unet
        elif cfg.lora_type == "lycoris":  # issue 9: LyCORIS adapter file, merged pipeline
            from expertune.models.lycoris import merge_lycoris, read_lycoris_config, save_lycoris

            save_lycoris(unet, folder, read_lycoris_config(cfg.lycoris_config), cfg.lycoris_config)
            unet = merge_lycoris(unet)
        elif cfg.model_type == "lora":
            from expertune.models.lora import merge_lora, save_lora

            save_lora(unet, folder)  # what load_lora_weights(OUTPUT_DIR) finds
            if cfg.expert_name:  # one clearly named LoRA per expert of a moe run
                save_lora(unet, folder, weight_name=f"{cfg.expert_name}.lora.safetensors")
            unet = merge_lora(unet)
        assemble_pipeline(trainer.components, unet, trainer.param).save_pretrained(
            folder, safe_serialization=True
        )
        write_json_atomic(folder / EXPERT_FILE, expert_record(trainer, result))

    from expertune.io import no_progress_bars

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


def expert_record(trainer: Trainer, result: RunResult) -> dict:
    """Contents of expertune.json: enough to chain this expert with its siblings.

    `encoder_fingerprints` are the cache's (VAE, whole text side); `component_fingerprints`
    one per part, so a base and a refiner of another family share the parts they have in
    common at inference (pipeline/sharing.py).
    """
    from expertune.pipeline.sharing import RECORD_KEY, component_fingerprints

    cfg = trainer.cfg
    parts = component_fingerprints(trainer.components, vae=trainer.data.fingerprints.get("vae"))
    T = trainer.num_train_timesteps
    plan = cfg.band_plan(T)
    index = plan.band_of(trainer.band.lo)
    return {
        "format": 2,
        "expertune_version": __version__,
        "name": cfg.expert_name,
        "role": expert_role(cfg),
        "model_family": cfg.model_family,
        "model_type": cfg.model_type,
        "base_model": cfg.pretrained_model_name_or_path,
        # the trained model this expert was split from (--init_from), or None
        "parent": trainer.checked.parent.describe() if trainer.checked.parent else None,
        "plan": {"edges": list(plan.edges)},
        "expert_index": index,
        "band": [trainer.band.lo, trainer.band.hi],
        "num_train_timesteps": trainer.num_train_timesteps,
        # diffusers denoising_start / denoising_end of this expert's band
        "handover": {
            "denoising_start": round(1 - (trainer.band.hi + 1) / T, 6),
            "denoising_end": round(1 - trainer.band.lo / T, 6),
        },
        "handover_fraction": round(1 - plan.edges[1] / T, 6) if len(plan) == 2 else None,
        "parameterisation": trainer.param.as_dict(),
        "encoder_fingerprints": trainer.data.fingerprints,
        RECORD_KEY: parts,
        "steps": result.steps,
        "weights": "ema" if cfg.use_ema else "trained",  # issue 9: --use_ema publishes EMA
        # a ControlNet expert: the pipeline is the base; the trained ControlNet is beside it
        "controlnet": controlnet_record(cfg) if cfg.controlnet else None,
    }


def controlnet_record(cfg: TrainConfig) -> dict:
    """What expertune.json says of a ControlNet expert: where its ControlNet is, how made."""
    from expertune.models.controlnet import ADAPTER_FILE, FOLDER

    return {
        "folder": FOLDER,
        "adapter": f"{FOLDER}/{ADAPTER_FILE}" if cfg.model_type == "lora" else None,
        "from": cfg.controlnet_model_name_or_path or "unet",
        "load_with": "diffusers.ControlNetModel.from_pretrained",
    }
