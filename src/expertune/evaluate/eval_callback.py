"""Eval loss during training: every --eval_steps_interval steps and at the end.

Appends `{"kind": "eval", ...}` records to metrics.jsonl (one per range: the band, and
[0, T) with --eval_full_range), logs the means to TensorBoard and redraws
OUTPUT_DIR/eval/loss_vs_timestep.png from every evaluation so far.
"""

from __future__ import annotations

import logging
from pathlib import Path

from expertune.evaluate.board import Board
from expertune.evaluate.eval_loss import eval_loss, eval_timesteps
from expertune.evaluate.eval_set import eval_set_for
from expertune.evaluate.live import inference_mode
from expertune.evaluate.records import EVAL_KIND, append_metrics, read_metrics
from expertune.schedule.bands import Band

log = logging.getLogger(__name__)

PLOT = Path("eval") / "loss_vs_timestep.png"


class EvalLossCallback:
    """Stable eval loss of the live expert; never changes training."""

    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.board = Board(Path(cfg.output_dir), cfg.report_to == "tensorboard")
        self.last_step: int | None = None
        self._eval_set = None

    def on_step_end(self, trainer) -> None:
        if trainer.state.step % self.cfg.eval_steps_interval:
            return
        self.evaluate(trainer)

    def on_train_end(self, trainer) -> None:
        if self.last_step != trainer.state.step:
            self.evaluate(trainer)
        self.board.close()

    def ranges(self, trainer) -> list[tuple[str, Band]]:
        full = Band(0, trainer.num_train_timesteps - 1)
        return [("band", trainer.band)] + ([("full", full)] if self.cfg.eval_full_range else [])

    def evaluate(self, trainer) -> list[dict]:
        """Measure, append to metrics.jsonl, log and plot; returns the new records."""
        self.last_step = step = trainer.state.step
        if not trainer.accelerator.is_main_process:
            return []
        eval_set = self._samples(trainer)
        records = []
        with inference_mode(trainer) as unet:
            for name, band in self.ranges(trainer):
                timesteps = eval_timesteps(band, self.cfg.eval_timesteps)
                result = eval_loss(
                    unet,
                    trainer.noise_scheduler,
                    eval_set.dataset,
                    timesteps,
                    self.cfg.prediction_type,
                    self.cfg.train_batch_size,
                )
                records.append(_record(step, name, band, result, len(eval_set)))
        append_metrics(trainer.output_dir, records)
        for r in records:
            self.board.scalar(f"eval/loss_{r['range']}", r["eval_loss"], step)
        self.board.flush()
        self._plot(trainer)
        return records

    def _samples(self, trainer):
        if self._eval_set is None:
            self._eval_set = eval_set_for(trainer.data, self.cfg.eval_split)
            if not self._eval_set.held_out:
                log.warning(
                    'eval loss uses %s: add a dataset_type "eval" dataset to hold images out',
                    self._eval_set.source,
                )
        return self._eval_set

    def _plot(self, trainer) -> None:
        from expertune.evaluate.plots import eval_loss_curves

        evals = read_metrics(trainer.output_dir)[1]
        band = [trainer.band.lo, trainer.band.hi]
        eval_loss_curves(evals, band, trainer.output_dir / PLOT)


def _record(step: int, name: str, band: Band, result, samples: int) -> dict:
    return {
        "kind": EVAL_KIND,
        "step": step,
        "range": name,
        "band": [band.lo, band.hi],
        "eval_loss": result.mean,
        "timesteps": list(result.timesteps),
        "losses": list(result.losses),
        "samples": samples,
    }
