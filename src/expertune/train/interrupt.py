"""Ctrl-C, SIGTERM and SIGHUP during training: finish the step, save if due, then stop.

SIGHUP is what a dropped ssh session sends; without a handler it kills the run with no
checkpoint, so it is treated like SIGTERM (exit 129 after the checkpoint).

A signal that lands mid-step (say between `optimizer.step` and `lr_scheduler.step`)
would leave a state no checkpoint may hold, so the handler only records the request;
the loop acts on it at the next step boundary. A second signal stops at once.
"""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class StopSignals:
    """While active, SIGINT/SIGTERM/SIGHUP set `signum` instead of interrupting the loop."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        print(
            f"expertune: {signal.Signals(signum).name} received: stopping after this step "
            "(press Ctrl-C again to quit at once, without a checkpoint)",
            file=sys.stderr,
            flush=True,
        )
