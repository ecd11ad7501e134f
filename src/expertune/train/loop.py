"""One expert's training run: batch -> timesteps in the band -> noise -> target -> loss -> step.

The recipe is a class whose setup is split by stage (`_setup_model`, `_setup_data`, ...),
then `train`, then `finish`, so any stage of a run is found by its name.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError, TrainingStopped
from expertune.evaluate.hooks import training_callbacks
from expertune.schedule.bands import Band
from expertune.schedule.noise import Parameterisation, training_scheduler
from expertune.schedule.sampling import sample_timesteps
from expertune.schedule.targets import (
    min_snr_weights,
    prediction_target,
    sample_noise,
    weighted_mse,
)
from expertune.train import checkpoint as ckpt
from expertune.train.batches import BatchSource
from expertune.train.outputs import MetricsLog


@dataclass
class RunResult:
    """What `train()` measured; also written to run_summary.json."""

    steps: int = 0
    wall_s: float = 0.0
    samples_per_s: float = 0.0
    samples: int = 0
    resumed_from: str | None = None
    extra: dict = field(default_factory=dict)


class Trainer:
    """Trains one expert of a timestep mixture-of-experts on its band."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.output_dir = Path(cfg.output_dir)

    # ----------------------------------------------------------------- setup
    def setup(self) -> Trainer:
        from expertune.train.setup import (
            setup_accelerator,
            setup_data,
            setup_model,
            setup_optimizer,
            setup_output_dir,
        )

        setup_output_dir(self.output_dir)
        self.accelerator = setup_accelerator(self.cfg, self.output_dir)
        self.components, self.unet, self.trainable = setup_model(self.cfg)
        self._setup_schedule()
        self.data = setup_data(self.cfg, self.components, self.accelerator)
        self.optimizer, self.lr_scheduler = setup_optimizer(
            self.cfg, self.trainable, self.max_steps
        )
        self.unet, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            self.unet, self.optimizer, self.lr_scheduler
        )
        self.state = ckpt.LoopState()
        self._setup_rng()
        self.resumed_from = self._maybe_resume()
        self.callbacks = training_callbacks(self.cfg)
        return self

    def _setup_schedule(self) -> None:
        self.param = Parameterisation.from_config(self.cfg)
        self.noise_scheduler = training_scheduler(self.components.scheduler_config, self.param)
        self.num_train_timesteps = self.noise_scheduler.config.num_train_timesteps
        lo, hi = self.cfg.expert_band(self.num_train_timesteps)
        self.band = Band(lo, hi)

    @property
    def global_batch(self) -> int:
        return self.cfg.train_batch_size * self.accelerator.num_processes

    @property
    def max_steps(self) -> int:
        if self.cfg.max_train_steps:
            return self.cfg.max_train_steps
        per_step = self.global_batch * self.cfg.gradient_accumulation_steps
        return self.cfg.num_train_epochs * math.ceil(len(self.data.dataset) / per_step)

    def _setup_rng(self) -> None:
        """Generators for timesteps (host) and noise (device); seeded per process."""
        seed = self.cfg.seed + self.accelerator.process_index
        self.t_gen = torch.Generator().manual_seed(seed)
        self.noise_gen = torch.Generator(device=self.accelerator.device).manual_seed(seed + 1)

    def _rng_state(self) -> dict[str, torch.Tensor]:
        return {
            "timesteps": self.t_gen.get_state(),
            "noise": self.noise_gen.get_state(),
            "torch": torch.get_rng_state(),
        }

    def _maybe_resume(self) -> str | None:
        if not self.cfg.resume_from_checkpoint:
            return None
        path = ckpt.resolve_resume(self.output_dir, self.cfg.resume_from_checkpoint)
        state, weights, rng = ckpt.load_checkpoint(path, self.optimizer, self.lr_scheduler)
        model = self.accelerator.unwrap_model(self.unet)
        missing = set(self.trainable) - set(weights)
        if missing:
            raise ConfigError(
                f"checkpoint {path} does not match this model ({len(missing)} trainable "
                "tensors missing, e.g. model type or LoRA rank changed); resume with the "
                "config that wrote it"
            )
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        self.t_gen.set_state(rng["timesteps"])
        self.noise_gen.set_state(rng["noise"])
        torch.set_rng_state(rng["torch"])
        self.state = state
        return str(path)

    # ----------------------------------------------------------------- train
    def train(self) -> RunResult:
        from tqdm.auto import tqdm

        cfg, acc = self.cfg, self.accelerator
        metrics = MetricsLog(self.output_dir, tensorboard=cfg.report_to == "tensorboard")
        metrics.truncate_after(self.state.step)
        self.metrics = metrics
        source = BatchSource(self.data.dataset, cfg.seed, cfg.train_batch_size, acc)
        bar = tqdm(
            total=self.max_steps,
            initial=self.state.step,
            desc=f"train {self.band.lo}..{self.band.hi}",
            disable=not acc.is_local_main_process,
            dynamic_ncols=True,
        )
        start = time.perf_counter()
        start_step, samples = self.state.step, 0
        last_t = time.perf_counter()
        self.unet.train()
        while self.state.step < self.max_steps:
            t_min, t_max, loss = self.band.hi, self.band.lo, None
            for _ in range(cfg.gradient_accumulation_steps):
                batch = source.batch(self.state.position)
                self.state.position += self.global_batch
                with acc.accumulate(self.unet):
                    loss, timesteps = self._micro_step(batch)
                t_min = min(t_min, int(timesteps.min()))
                t_max = max(t_max, int(timesteps.max()))
                samples += self.global_batch
            self.state.step += 1
            self.state.epoch = source.epoch_of(self.state.position)
            now = time.perf_counter()
            metrics.add(self._record(loss, t_min, t_max, now - last_t))
            last_t = now
            bar.update(1)
            if self.state.step % cfg.logging_steps == 0 or self.state.step == self.max_steps:
                self._flush(metrics, bar)
            if cfg.checkpointing_steps and self.state.step % cfg.checkpointing_steps == 0:
                self._flush(metrics, bar)
                self.save_checkpoint()
            for callback in self.callbacks:
                callback.on_step_end(self)
        self._flush(metrics, bar)
        for callback in self.callbacks:
            callback.on_train_end(self)
        metrics.close()
        bar.close()
        wall = time.perf_counter() - start
        return RunResult(
            steps=self.state.step,
            wall_s=wall,
            samples=samples,
            samples_per_s=samples / wall if wall > 0 and self.state.step > start_step else 0.0,
            resumed_from=self.resumed_from,
        )

    def _micro_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward, loss and backward for one micro-batch; optimizer step when accumulation ends."""
        cfg = self.cfg
        latents = batch["latents"]
        timesteps = sample_timesteps(self.band, latents.shape[0], self.t_gen)
        noise = sample_noise(latents, self.noise_gen, cfg.noise_offset)
        t_dev = timesteps.to(latents.device, non_blocking=True)
        noisy = self.noise_scheduler.add_noise(latents, noise, t_dev)
        pred = self.unet(
            noisy,
            t_dev,
            encoder_hidden_states=batch["prompt_embeds"],
            added_cond_kwargs={
                "text_embeds": batch["pooled_prompt_embeds"],
                "time_ids": batch["time_ids"],
            },
        ).sample
        target = prediction_target(self.noise_scheduler, latents, noise, t_dev, cfg.prediction_type)
        weights = None
        if cfg.snr_gamma:
            weights = min_snr_weights(
                self.noise_scheduler, t_dev, cfg.snr_gamma, cfg.prediction_type
            )
        loss = weighted_mse(pred, target, weights)
        self.accelerator.backward(loss)
        if self.accelerator.sync_gradients:
            if cfg.max_grad_norm > 0:
                self.accelerator.clip_grad_norm_(self.trainable.values(), cfg.max_grad_norm)
            self.optimizer.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        return loss.detach(), timesteps

    def _record(self, loss: torch.Tensor, t_min: int, t_max: int, dt: float) -> dict:
        per_step = self.global_batch * self.cfg.gradient_accumulation_steps
        return {
            "step": self.state.step,
            "loss": loss,
            "lr": self.lr_scheduler.get_last_lr()[0],
            "timestep_min": t_min,
            "timestep_max": t_max,
            "samples_per_s": per_step / dt if dt > 0 else 0.0,
            "epoch": self.state.epoch,
        }

    def _flush(self, metrics: MetricsLog, bar) -> None:
        flushed = metrics.flush()
        for record in flushed:
            if not math.isfinite(record["loss"]):
                raise TrainingStopped(
                    f"loss is {record['loss']} at step {record['step']}; the last good "
                    f"checkpoint in {self.output_dir} is kept. Lower LEARNING_RATE or check "
                    "the data, then resume with --resume_from_checkpoint latest"
                )
        if not flushed:
            return
        last = flushed[-1]
        bar.set_postfix(
            loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}", sps=f"{last['samples_per_s']:.1f}"
        )

    # ----------------------------------------------------------------- save
    def save_checkpoint(self) -> Path | None:
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:
            return None
        model = self.accelerator.unwrap_model(self.unet)
        weights = {n: p for n, p in model.named_parameters() if p.requires_grad}
        return ckpt.save_checkpoint(
            self.output_dir,
            self.state,
            weights,
            self.optimizer,
            self.lr_scheduler,
            self._rng_state(),
            self.cfg.checkpoints_total_limit,
        )
