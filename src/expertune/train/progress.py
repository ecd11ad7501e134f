"""Training progress: a tqdm bar on a terminal, one plain line every N steps elsewhere.

In a log file, CI or a job scheduler a carriage-return bar leaves hundreds of fragments;
there the run prints one line every --logging_steps steps and at the end:
`train 0..999: step 20/100 (20%) loss 0.1234 lr 1.00e-04 sps 3.1 elapsed 0:00:12 eta 0:00:48`.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from typing import TextIO


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def make_progress(
    total: int, initial: int, desc: str, enabled: bool, every: int = 1, stream: TextIO | None = None
):
    """tqdm when `stream` (stderr) is a terminal, else LineProgress printing every `every`
    steps (and the last); nothing when not enabled."""
    stream = stream or sys.stderr
    if enabled and is_terminal(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, file=stream)
    return LineProgress(total, initial, desc, stream if enabled else None, every)


class LineProgress:
    """The subset of tqdm the trainer uses (update, set_postfix, close), as whole lines."""

    def __init__(
        self, total: int, initial: int, desc: str, stream: TextIO | None, every: int = 1
    ) -> None:
        self.total, self.n, self.desc, self.stream = total, initial, desc, stream
        self.every = max(1, every)
        self.start_n, self.started = initial, time.perf_counter()
        self.postfix: dict[str, str] = {}
        self.printed = initial

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values: str) -> None:
        """New metrics (one flush): print the line when the step is due."""
        self.postfix = {k: str(v) for k, v in values.items()}
        if self.n % self.every == 0 or self.n == self.total:
            self._print()

    def close(self) -> None:
        if self.n != self.printed:
            self._print()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.started
        done = self.n - self.start_n
        eta = elapsed / done * (self.total - self.n) if done else None
        pct = f" ({100 * self.n // self.total}%)" if self.total else ""
        metrics = "".join(f" {k} {v}" for k, v in self.postfix.items())
        left = f" eta {timedelta(seconds=round(eta))}" if eta is not None else ""
        return (
            f"{self.desc}: step {self.n}/{self.total}{pct}{metrics} "
            f"elapsed {timedelta(seconds=round(elapsed))}{left}"
        )

    def _print(self) -> None:
        if self.stream is None or self.n == self.printed:
            return
        print(self.line(), file=self.stream, flush=True)
        self.printed = self.n
