"""One expert's run, composed: the Trainer, the evaluate/ callbacks it is given, publishing
and the report. The only module that wires train/ and evaluate/ together for a run."""

from __future__ import annotations

import logging

from expertune.config.schema import TrainConfig

log = logging.getLogger(__name__)


def train_expert(cfg: TrainConfig):
    """Train, publish and report one expert as `cfg` says; returns train.loop.RunResult."""
    from expertune.train.run import run_training

    return run_training(
        cfg,
        callbacks=training_callbacks(cfg),
        hold_out=hold_out_for(cfg),
        on_published=write_run_report,
    )


def hold_out_for(cfg: TrainConfig):
    """The `--eval_split` rule that keeps eval samples out of training, or None."""
    if not cfg.eval_split:
        return None
    from expertune.evaluate.eval_set import split_items

    def hold_out(items):
        return split_items(items, cfg.eval_split)[1]

    return hold_out


def training_callbacks(cfg: TrainConfig) -> list:
    """Validation and eval loss, as the config asks; in the order they run.

    The CLIP model is resolved here, before the first step, so an unreachable one fails
    at once in one line rather than at the first validation.
    """
    from expertune.evaluate.eval_callback import EvalLossCallback
    from expertune.evaluate.validation import ValidationCallback

    callbacks = []
    if cfg.validation_prompt or cfg.validation_using_datasets:
        clip_dir = None
        if cfg.evaluation_type == "clip":
            from expertune.evaluate.clip_score import resolve_clip_model

            clip_dir = resolve_clip_model(cfg.pretrained_evaluation_model_name_or_path)
        callbacks.append(ValidationCallback(cfg, clip_dir))
    if cfg.eval_steps_interval:
        callbacks.append(EvalLossCallback(cfg))
    return callbacks


def write_run_report(trainer) -> None:
    """OUTPUT_DIR/report.html once the run's records are final (main process only).

    The report is derived and regenerable, so a failure here is logged, never raised:
    the trained model must not be lost to it.
    """
    from expertune.evaluate.report import write_report, write_run_config
    from expertune.records.expert import expert_role

    cfg = trainer.cfg
    try:
        write_run_config(
            trainer.output_dir, cfg, trainer.band, expert_role(cfg), trainer.num_train_timesteps
        )
        log.info("wrote %s", write_report(trainer.output_dir))
    except Exception:
        log.exception(
            "report.html could not be written; run `expertune report %s` to retry",
            trainer.output_dir,
        )
