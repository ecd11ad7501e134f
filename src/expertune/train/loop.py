"""One expert's training run: batch -> timesteps in the band -> noise -> target -> loss -> step.

The recipe is a class whose setup is split by stage (setup.py: model, data, optimizer),
then `train`; run.py checkpoints the end state and publishes the pipeline. Reliability
lives beside it: preflight.py (user errors before any work), guards.py (non-finite
steps), interrupt.py (Ctrl-C at a step boundary), checkpoint.py (atomic, verified).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from expertune.config.schema import TrainConfig
from expertune.data.conditioning_images import KEY as CONDITIONING
from expertune.errors import ConfigError, Interrupted, TrainingStopped
from expertune.models.controlnet import controlnet_residuals
from expertune.schedule.bands import Band
from expertune.schedule.loss import DenoisingLoss
from expertune.schedule.noise import Parameterisation, training_scheduler
from expertune.schedule.sampling import sample_timesteps
from expertune.schedule.targets import sample_noise
from expertune.train import checkpoint as ckpt
from expertune.train import rng as rng_io
from expertune.train.batches import BatchSource, PrefetchedBatches, batch_source
from expertune.train.ema import due_for_callbacks, ema_files, ema_weights
from expertune.train.guards import FiniteGuard, first_bad, stop_message
from expertune.train.interrupt import StopSignals
from expertune.train.outputs import MetricsLog
from expertune.train.storage import saving

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What `train()` measured; also written to run_summary.json."""

    steps: int = 0
    wall_s: float = 0.0
    samples_per_s: float = 0.0
    samples: int = 0
    resumed_from: str | None = None
    start_step: int = 0  # the step this run began at (issue 9: > 0 when it resumed)

    @property
    def steps_this_run(self) -> int:
        return self.steps - self.start_step


class Trainer:
    """Trains one expert of a timestep mixture-of-experts on its band."""

    def __init__(self, cfg: TrainConfig, callbacks=(), hold_out=None) -> None:
        self.cfg = cfg
        self.callbacks = list(callbacks)  # train.callbacks.TrainingCallback, given by app/
        self.hold_out = hold_out  # items -> indices kept out of training (eval split)
        self.output_dir = Path(cfg.output_dir)
        self.saved_step: int | None = None  # the step of the newest complete checkpoint
        self._window = time.perf_counter()  # start of the steps not flushed yet

    # ----------------------------------------------------------------- setup
    def setup(self, checked=None) -> Trainer:
        """`checked`: preflight's result when the caller ran it already (run.py does)."""
        from expertune.train.preflight import preflight
        from expertune.train.setup import (
            setup_accelerator,
            setup_data,
            setup_model,
            setup_optimizer,
            setup_output_dir,
        )

        self.checked = checked or preflight(self.cfg)  # user errors, before any work
        setup_output_dir(self.output_dir)
        self.accelerator = setup_accelerator(self.cfg, self.output_dir)
        self.components, self.unet, self.trainable = setup_model(
            self.cfg, self.checked.parent, self.accelerator.device
        )
        self._setup_schedule()
        self.data = setup_data(self.cfg, self.components, self.accelerator, self.hold_out)
        self.unet.to(self.accelerator.device)  # before the optimizer: fused AdamW on CUDA
        # self.unet is the trained module: the UNet, or with --controlnet the ControlNet
        # (then the frozen UNet, components.unet, only receives its residuals)
        self.frozen_unet = self.components.unet if self.cfg.controlnet else None
        if self.frozen_unet is not None:
            self.frozen_unet.to(self.accelerator.device)
        self.optimizer, self.lr_scheduler = setup_optimizer(
            self.cfg, self.trainable, self.max_steps
        )
        self.unet, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            self.unet, self.optimizer, self.lr_scheduler
        )
        if self.cfg.torch_compile:  # in place: the module, its names and saves stay as they are
            self.accelerator.unwrap_model(self.unet).compile(backend=self.cfg.torch_compile_backend)
        from expertune.train.ema import make_ema

        self.ema = make_ema(self.cfg, self.trainable)  # issue 9: --use_ema, on the device
        self.state = ckpt.LoopState(
            run_id=uuid.uuid4().hex[:12],
            data_fingerprint=self.data.dataset.fingerprint,
            band=[self.band.lo, self.band.hi],
            parameterisation=self.param.as_dict(),
            global_batch=self.global_batch,
        )
        self._setup_rng()
        self.resumed_from = self._maybe_resume(self.checked.resume)
        self.guard = FiniteGuard(
            self.cfg.skip_nonfinite_steps, check_grads=self.cfg.mixed_precision != "fp16"
        )
        return self

    def _setup_schedule(self) -> None:
        self.param = Parameterisation.from_config(self.cfg)
        self.noise_scheduler = training_scheduler(self.components.scheduler_config, self.param)
        self.num_train_timesteps = self.noise_scheduler.config.num_train_timesteps
        cfg = self.cfg
        self.loss = DenoisingLoss(
            self.noise_scheduler,
            cfg.prediction_type,
            cfg.snr_gamma,
            loss_type=cfg.loss_type,
            huber_c=cfg.huber_c,
            huber_schedule=cfg.huber_schedule,
        )
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

    def _setup_rng(self, offset: int = 0) -> None:
        """Generators for timesteps (host) and noise (device), reseeded for every sample.

        Each sample's timestep and noise come from its global sample index (sample_seed),
        not from a per-process stream, so N processes x batch B draw exactly what one
        process x batch N*B draws, and a resume draws what the interrupted run would have.
        `offset` is kept for the reseeding path of older checkpoints (no effect on draws).
        """
        self.t_gen = torch.Generator()
        self.noise_gen = torch.Generator(device=self.accelerator.device)

    def _generators(self) -> dict[str, torch.Generator]:
        return {"timesteps": self.t_gen, "noise": self.noise_gen}

    def _maybe_resume(self, path: Path | None) -> str | None:
        """Restore model, optimizer, lr schedule, every RNG and the counters from `path`."""
        if path is None:
            return None
        rank = self.accelerator.process_index
        state, weights, rng = ckpt.load_checkpoint(
            path, self.optimizer, self.lr_scheduler, rank, model=self.unet
        )
        missing = set(self.trainable) - set(weights)
        if missing:
            raise ConfigError(
                f"checkpoint {path} does not match this model ({len(missing)} trainable "
                "tensors missing, e.g. model type or LoRA rank changed); resume with the "
                "config that wrote it"
            )
        ckpt.load_weights(self.accelerator, self.unet, weights)  # whole or sharded model
        if rng is None:  # written by fewer processes than this run has: not exact any more
            log.warning("%s has no RNG state for process %d; reseeding it", path.name, rank)
            self._setup_rng(offset=1_000_003 * state.step)
        else:
            rng_io.restore(rng, self._generators())
        if self.ema is not None:  # issue 9: EMA weights of the checkpoint
            from expertune.train.ema import FILE

            tensors = ckpt.load_extra(path, FILE)
            if tensors is None:
                raise ConfigError(
                    f"checkpoint {path} has no EMA weights ({FILE}); it was written without "
                    "--use_ema: resume it without --use_ema, or start a new OUTPUT_DIR"
                )
            self.ema.load(tensors)
        state.run_id = state.run_id or self.state.run_id
        _check_same_data(path, state.data_fingerprint, self.state.data_fingerprint)
        state.data_fingerprint = self.state.data_fingerprint
        state.band, state.parameterisation = self.state.band, self.state.parameterisation
        state.global_batch = self.state.global_batch
        self.state = state
        self.saved_step = state.step
        log.info("resumed from %s (step %d of %d)", path.name, state.step, self.max_steps)
        return str(path)

    # ----------------------------------------------------------------- train
    def train(self) -> RunResult:
        from expertune.train.progress import make_progress

        cfg, acc = self.cfg, self.accelerator
        if acc.is_main_process:
            ckpt.claim_run(self.output_dir, self.state.run_id)
        self.metrics = MetricsLog(
            self.output_dir, cfg.report_to == "tensorboard", writes=acc.is_main_process
        )
        self.metrics.truncate_after(self.state.step)
        if acc.is_main_process:  # issue 9: --report_to=wandb
            from expertune.train.wandb_log import open_tracker

            self.metrics.tracker = open_tracker(cfg, self.output_dir, self.state.run_id)
        micro_batches = (self.max_steps - self.state.step) * cfg.gradient_accumulation_steps
        source = batch_source(self.data.dataset, cfg, acc, self.state.position, micro_batches)
        if isinstance(source, PrefetchedBatches) and acc.is_main_process:
            log.info("batches: %d worker processes read the cache ahead", source.workers)
        self.bar = make_progress(  # issue 9: plain lines when stderr is not a terminal
            self.max_steps,
            self.state.step,
            f"train {self.band.lo}..{self.band.hi}",
            enabled=acc.is_local_main_process,
            every=cfg.logging_steps,
        )
        start, start_step, samples = time.perf_counter(), self.state.step, 0
        self._window = start  # when the steps of the next flush began (synced throughput)
        self.unet.train()
        try:
            with StopSignals() as stop:
                while self.state.step < self.max_steps:
                    samples += self._step(source)
                    self._after_step(stop)
                self._flush()
            with ema_weights(self.ema):  # issue 9: the final validation sees the EMA
                for callback in self.callbacks:
                    callback.on_train_end(self)
        finally:
            source.close()
            self.metrics.close()
            self.bar.close()
        wall = time.perf_counter() - start
        return RunResult(
            steps=self.state.step,
            wall_s=wall,
            samples=samples,
            samples_per_s=samples / wall if wall > 0 and self.state.step > start_step else 0.0,
            resumed_from=self.resumed_from,
            start_step=start_step,
        )

    def _step(self, source: BatchSource | PrefetchedBatches) -> int:
        """One optimizer step over `gradient_accumulation_steps` micro-batches; samples seen."""
        cfg, acc = self.cfg, self.accelerator
        began = time.perf_counter()
        t_min, t_max, samples = self.band.hi, self.band.lo, 0
        for _ in range(cfg.gradient_accumulation_steps):
            batch = source.batch(self.state.position)
            with acc.accumulate(self.unet):  # draws by the position: advance it after
                loss, timesteps, update = self._micro_step(batch)
            self.state.position += self.global_batch
            t_min = min(t_min, int(timesteps.min()))
            t_max = max(t_max, int(timesteps.max()))
            samples += self.global_batch
        self.state.step += 1
        self.state.epoch = source.epoch_of(self.state.position)
        record = self._record(loss, t_min, t_max, time.perf_counter() - began)
        self.metrics.add({**record, **update, "finite": self.guard.end_step()})
        self.bar.update(1)
        return samples

    def _after_step(self, stop: StopSignals) -> None:
        """Flush, checkpoint, callbacks and a requested stop, each when due."""
        cfg, step = self.cfg, self.state.step
        if step % cfg.logging_steps == 0 or step == self.max_steps:
            self._flush()
        if cfg.checkpointing_steps and step % cfg.checkpointing_steps == 0:
            self._flush()  # verifies every step up to this one is finite
            self.save_checkpoint()
        with ema_weights(self.ema if due_for_callbacks(cfg, step) else None):  # issue 9
            for callback in self.callbacks:
                callback.on_step_end(self)
        if step % cfg.logging_steps == 0:  # checkpoints and callbacks are not training time
            self._window = time.perf_counter()
        signum = self._stop_requested(stop)
        if signum is not None:
            self._stop(signum)

    def _micro_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Forward, loss and backward for one micro-batch; optimizer step when accumulation ends."""
        latents = batch["latents"]
        # this process's samples are the k-th slice of the global batch at `position`
        first = self.state.position + self.accelerator.process_index * self.cfg.train_batch_size
        timesteps, noise = self._draw(latents, first)
        t_dev = timesteps.to(latents.device, non_blocking=True)
        noisy = self.loss.noisy(latents, noise, t_dev)
        pred = self._predict(noisy, t_dev, batch)
        loss = self.loss(pred, latents, noise, t_dev)
        self.guard.see_loss(loss)
        self.accelerator.backward(loss)
        update: dict = {}
        if self.accelerator.sync_gradients:
            norm = self._grad_norm()
            self.guard.see_grad_norm(norm)
            skipped = not self.guard.apply_step(self.state.step + 1, self.state.skipped_steps)
            if skipped:
                self.state.skipped_steps += 1
            else:
                self.optimizer.step()
                if self.ema is not None:  # issue 9: --use_ema
                    self.ema.step()
            self.lr_scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            update = {"skipped": skipped}
            if norm is not None:
                update["grad_norm"] = norm.detach()
        return loss.detach(), timesteps, update

    def _predict(self, noisy: torch.Tensor, t: torch.Tensor, batch: dict) -> torch.Tensor:
        """The denoiser's prediction: the UNet's, or the frozen UNet's with the
        ControlNet's residuals of the batch's conditioning images (--controlnet)."""
        added = {"text_embeds": batch["pooled_prompt_embeds"], "time_ids": batch["time_ids"]}
        if self.frozen_unet is not None:
            down, mid = controlnet_residuals(self.unet, noisy, t, batch, batch[CONDITIONING])
            extra = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        else:
            return self.unet(
                noisy, t, encoder_hidden_states=batch["prompt_embeds"], added_cond_kwargs=added
            ).sample
        with self.accelerator.autocast():  # not prepared (frozen): autocast it as the ControlNet
            return self.frozen_unet(
                noisy,
                t,
                encoder_hidden_states=batch["prompt_embeds"],
                added_cond_kwargs=added,
                **extra,
            ).sample

    def _draw(self, latents: torch.Tensor, first: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Timesteps (host) and noise for samples `first, first+1, ...` of the global order."""
        timesteps, noise = [], []
        for i in range(latents.shape[0]):
            seed = sample_seed(self.cfg.seed, first + i)
            timesteps.append(sample_timesteps(self.band, 1, self.t_gen.manual_seed(seed)))
            one = latents[i : i + 1]
            noise.append(
                sample_noise(one, self.noise_gen.manual_seed(seed ^ 1), self.cfg.noise_offset)
            )
        return torch.cat(timesteps), torch.cat(noise)

    def _grad_norm(self) -> torch.Tensor | None:
        """The total gradient norm on the device (clipping first when --max_grad_norm > 0)."""
        params = list(self.trainable.values())
        if self.cfg.max_grad_norm > 0:
            return self.accelerator.clip_grad_norm_(params, self.cfg.max_grad_norm)
        grads = [p.grad for p in params if p.grad is not None]
        return torch.nn.utils.get_total_norm(grads) if grads else None

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

    def _flush(self) -> None:
        """Write pending metrics (one host sync); stop at the first non-finite step."""
        last = f"checkpoint-{self.saved_step}" if self.saved_step is not None else None
        intact = f"{last} is intact" if last else "no checkpoint was written yet"
        self._stamp_throughput()
        with saving("metrics.jsonl", self.output_dir, intact):
            flushed = self.metrics.flush()
        bad = first_bad(flushed)
        if bad is not None:
            raise TrainingStopped(stop_message(bad, self.output_dir, last))
        if flushed:
            last = flushed[-1]
            self.bar.set_postfix(
                loss=f"{last['loss']:.4f}",
                lr=f"{last['lr']:.2e}",
                sps=f"{last.get('samples_per_s_synced', last['samples_per_s']):.1f}",
            )

    def _stamp_throughput(self) -> None:
        """samples/s over the steps since the last flush, once the device has finished them.

        The per-step `samples_per_s` times only the host (on CUDA: kernel launches); this
        one waits for the device at the flush, which syncs anyway, so it is the real rate.
        """
        pending = self.metrics.pending()
        if not pending:
            return
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize(self.accelerator.device)
        now = time.perf_counter()
        per_step = self.global_batch * self.cfg.gradient_accumulation_steps
        rate = len(pending) * per_step / max(now - self._window, 1e-9)
        for record in pending:
            record["samples_per_s_synced"] = rate
        self._window = now

    # ----------------------------------------------------------------- stop
    def _stop_requested(self, stop: StopSignals) -> int | None:
        """The signal to stop on; several processes agree on it at flush steps only."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return stop.signum
        if self.state.step % self.cfg.logging_steps:
            return None
        flag = torch.tensor([stop.signum or 0], device=acc.device)
        return int(acc.reduce(flag, reduction="max").item()) or None

    def _stop(self, signum: int) -> None:
        """Save a checkpoint if any step ran since the last one, then raise Interrupted."""
        self._flush()  # a pending non-finite step stops the run without saving instead
        step = self.state.step
        if self.saved_step != step:
            self.save_checkpoint()
            what = f"wrote checkpoint-{step}"
        else:
            what = f"checkpoint-{step} was already saved"
        raise Interrupted(
            signum,
            f"interrupted at step {step} of {self.max_steps}; {what} in {self.output_dir}. "
            "Run the same command with --resume_from_checkpoint latest to continue",
        )

    # ----------------------------------------------------------------- save
    def save_checkpoint(self) -> Path | None:
        """Write checkpoint-STEP (main process) with every process's RNG states.

        Every process gathers (RNG states, weights and optimizer state: collectives under
        FSDP and DeepSpeed), then only the main process writes.
        """
        acc = self.accelerator
        states = [rng_io.capture(self._generators())]
        if acc.num_processes > 1:
            from accelerate.utils import gather_object

            states = gather_object(states)
        weights = ckpt.gather_weights(acc, self.unet, self.trainable)
        optimizer = ckpt.gather_optimizer(acc, self.unet, self.optimizer)
        acc.wait_for_everyone()
        path = None
        if acc.is_main_process:
            path = ckpt.save_checkpoint(
                self.output_dir,
                self.state,
                weights,
                optimizer,
                self.lr_scheduler,
                states,
                self.cfg.checkpoints_total_limit,
                extra=ema_files(self.ema),
            )
            if self.cfg.push_checkpoints_to_hub:  # issue 9
                from expertune.train.hub import push_checkpoint

                push_checkpoint(self.cfg, path)
        acc.wait_for_everyone()
        self.saved_step = self.state.step
        return path


def sample_seed(seed: int, index: int) -> int:
    """A 63-bit seed for sample `index` of the run's global sample order (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + (index + 1) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (z ^ (z >> 31)) >> 1


def _check_same_data(path: Path, recorded: str, current: str) -> None:
    """Warn when a resumed run's batch order cannot be the original's (data changed)."""
    if recorded and recorded != current:
        log.warning(
            "the training data changed since %s (images, captions, buckets, repeats or "
            "batch size): training resumes at the same step, but the batch order differs "
            "from the interrupted run's",
            path.name,
        )
