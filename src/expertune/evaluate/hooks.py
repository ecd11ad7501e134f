"""Callbacks the training loop runs after each optimizer step and at the end.

A callback gets the Trainer and decides from its config and step whether work is due
(one modulo when nothing is, so the hot path gains nothing). It must leave training
unchanged: no touching the trainer's generators or the optimizer, and any global RNG it
uses is saved and restored around it (`evaluate.live.inference_mode`).
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)


class TrainingCallback(Protocol):
    def on_step_end(self, trainer) -> None: ...

    def on_train_end(self, trainer) -> None: ...


def training_callbacks(cfg) -> list[TrainingCallback]:
    """Validation and eval loss, as the config asks; in the order they run.

    The CLIP model is resolved here, before the first step, so an unreachable one fails
    at once in one line rather than at the first validation.
    """
    from expertune.evaluate.eval_callback import EvalLossCallback
    from expertune.evaluate.validation import ValidationCallback

    callbacks: list[TrainingCallback] = []
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
    if not trainer.accelerator.is_main_process:
        return
    from expertune.evaluate.report import write_report, write_run_config
    from expertune.train.run import expert_role

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
