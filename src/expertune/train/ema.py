"""EMA of the trained weights (SimpleTuner's --use_ema / --ema_decay) with diffusers' EMAModel.

- Kept on the training device, over the trainable parameters only (every UNet weight in
  full training, the adapter in LoRA training), updated after each optimizer step that
  was applied. diffusers' decay ramp applies: min(ema_decay, (1 + n) / (10 + n)),
  n = updates so far - 1 (the first update copies the weights).
- Checkpointed as `ema.safetensors` (shadow weights by parameter name plus the update
  count), sealed in the checkpoint's manifest, restored on resume.
- Used for validation and eval loss (`swapped`: the live weights are stored, the EMA
  weights copied in, and restored after), and **published as the final model**: the
  pipeline in OUTPUT_DIR holds the EMA weights; the raw weights stay in the last
  checkpoint's model.safetensors.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)

FILE = "ema.safetensors"
_COUNT = "__ema_optimization_step__"


class ExpertEMA:
    """diffusers' EMAModel over named trainable parameters."""

    def __init__(self, named: dict[str, torch.nn.Parameter], decay: float) -> None:
        from diffusers.training_utils import EMAModel

        self.names = list(named)
        self.params = list(named.values())
        self.model = EMAModel(self.params, decay=decay)
        self.model.to(device=self.params[0].device)

    def step(self) -> None:
        """One EMA update towards the live weights (after an applied optimizer step)."""
        self.model.step(self.params)

    def tensors(self) -> dict[str, torch.Tensor]:
        """The checkpoint's ema.safetensors contents (CPU tensors)."""
        out = {
            n: p.detach().cpu() for n, p in zip(self.names, self.model.shadow_params, strict=True)
        }
        out[_COUNT] = torch.tensor([self.model.optimization_step], dtype=torch.int64)
        return out

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the shadow weights and update count from ema.safetensors."""
        missing = [n for n in self.names if n not in tensors]
        if missing or _COUNT not in tensors:
            from expertune.errors import ConfigError

            raise ConfigError(
                f"the checkpoint's {FILE} does not match this model ({len(missing)} weights "
                "missing); resume with the config that wrote it"
            )
        with torch.no_grad():
            for name, shadow in zip(self.names, self.model.shadow_params, strict=True):
                shadow.copy_(tensors[name])
        self.model.optimization_step = int(tensors[_COUNT].item())

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """The EMA weights in the model for the duration (validation, publishing)."""
        self.model.store(self.params)
        self.model.copy_to(self.params)
        try:
            yield
        finally:
            self.model.restore(self.params)


def make_ema(cfg, named: dict[str, torch.nn.Parameter]) -> ExpertEMA | None:
    """An ExpertEMA when --use_ema, else None."""
    if not getattr(cfg, "use_ema", False):
        return None
    log.info(
        "EMA (decay %g) of %d trainable tensors kept on %s; validation uses it and the "
        "published pipeline holds it",
        cfg.ema_decay,
        len(named),
        next(iter(named.values())).device,
    )
    return ExpertEMA(named, cfg.ema_decay)


def ema_weights(ema: ExpertEMA | None):
    """`ema.swapped()`, or a no-op context without EMA."""
    return ema.swapped() if ema is not None else contextlib.nullcontext()


def due_for_callbacks(cfg, step: int) -> bool:
    """Whether a validation or eval-loss callback runs at `step` (then EMA is swapped in)."""
    every = [getattr(cfg, "validation_steps", 0), getattr(cfg, "eval_steps_interval", 0)]
    return any(n and step % n == 0 for n in every)


def ema_files(ema: ExpertEMA | None) -> dict[str, dict[str, torch.Tensor]]:
    """The checkpoint's extra files: {"ema.safetensors": ...} with EMA, else {}."""
    return {FILE: ema.tensors()} if ema is not None else {}
