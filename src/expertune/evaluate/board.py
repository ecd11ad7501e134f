"""TensorBoard output of evaluation: scalars and images under OUTPUT_DIR/logs, opened lazily.

Each callback keeps its own writer (TensorBoard merges the event files of one folder), so
no callback depends on another's lifetime.
"""

from __future__ import annotations

from pathlib import Path


class Board:
    """A SummaryWriter created on first use; every call is a no-op when disabled."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.log_dir = Path(output_dir) / "logs"
        self.enabled = enabled
        self._writer = None

    def _get(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.log_dir))
        return self._writer

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.enabled:
            self._get().add_scalar(tag, value, step)

    def image(self, tag: str, image, step: int) -> None:
        """An RGB PIL image."""
        if self.enabled:
            from expertune.evaluate.images import to_tensor

            self._get().add_image(tag, to_tensor(image), step)

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
