"""Non-finite loss or gradient: caught at its exact step and never checkpointed.

Default (`--skip_nonfinite_steps 0`): no host sync is added to a step. Each step's
finiteness (loss of every micro-batch, and the gradient norm) is a device bool in its
metrics record; the records are converted together at each flush (every
`--logging_steps`, and always before a checkpoint), which names the first bad step and
stops before any checkpoint can hold its state. The steps between the bad one and the
flush are wasted compute, nothing else.

`--skip_nonfinite_steps N`: the decision must come before `optimizer.step`, so each step
waits for its gradient norm (one host sync per step). A bad step leaves weights and
optimizer moments untouched but still counts as a step (the data position and the lr
schedule advance); the (N+1)-th stops the run.

With fp16 mixed precision, overflowing gradients are normal: the grad scaler skips those
steps itself, so only the loss is checked there.
"""

from __future__ import annotations

import logging
import math

import torch

from expertune.errors import TrainingStopped

log = logging.getLogger(__name__)


class FiniteGuard:
    """Folds each step's finiteness into one device bool; decides skips when allowed."""

    def __init__(self, skip_allowed: int, check_grads: bool = True) -> None:
        self.skip_allowed = skip_allowed
        self.check_grads = check_grads
        self._ok: torch.Tensor | None = None

    def see_loss(self, loss: torch.Tensor) -> None:
        self._fold(torch.isfinite(loss.detach()).all())

    def see_grad_norm(self, norm: torch.Tensor | None) -> None:
        if self.check_grads and norm is not None:
            self._fold(torch.isfinite(norm.detach()))

    def _fold(self, ok: torch.Tensor) -> None:
        self._ok = ok if self._ok is None else self._ok & ok

    def end_step(self) -> torch.Tensor:
        """This step's verdict (a device bool, no sync); the next step starts fresh."""
        ok = self._ok if self._ok is not None else torch.tensor(True)
        self._ok = None
        return ok

    def apply_step(self, step: int, skipped_so_far: int) -> bool:
        """Skip mode only (host sync): True to apply the optimizer step, False to skip it.

        Raises TrainingStopped when this would be one skip more than allowed.
        """
        if not self.skip_allowed or self._ok is None or bool(self._ok):
            return True
        if skipped_so_far + 1 > self.skip_allowed:
            raise TrainingStopped(
                f"non-finite loss or gradient at step {step}, and {skipped_so_far} steps were "
                f"already skipped (--skip_nonfinite_steps={self.skip_allowed}); nothing after "
                "the last checkpoint was saved. Lower LEARNING_RATE or check the data, then "
                "resume with --resume_from_checkpoint latest"
            )
        log.warning(
            "skipping step %d: non-finite loss or gradient (%d of %d skips allowed)",
            step,
            skipped_so_far + 1,
            self.skip_allowed,
        )
        return False


def first_bad(records: list[dict]) -> dict | None:
    """The first flushed record whose step was non-finite and not skipped, if any."""
    for record in records:
        if not record.get("finite", True) and not record.get("skipped", False):
            return record
    return None


def stop_message(record: dict, output_dir, last_checkpoint: str | None) -> str:
    """One line: what was non-finite at which step, what is kept, and what to do."""
    loss, norm = record["loss"], record.get("grad_norm")
    what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {norm}"
    kept = (
        f"the last good checkpoint {last_checkpoint} in {output_dir} is kept"
        if last_checkpoint
        else f"no checkpoint was written to {output_dir}"
    )
    return (
        f"{what} at step {record['step']}; {kept}. Lower LEARNING_RATE or check the data, "
        "then resume with --resume_from_checkpoint latest (or allow a few bad steps with "
        "--skip_nonfinite_steps N)"
    )
