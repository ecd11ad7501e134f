"""A dropped ssh session (SIGHUP) stops training at a step boundary like SIGTERM does."""

from __future__ import annotations

import os
import signal

import pytest

from expertune.train.interrupt import StopSignals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_is_recorded_not_raised(sig, capsys):
    before = signal.getsignal(sig)
    with StopSignals() as stop:
        os.kill(os.getpid(), sig)
        assert stop.signum == sig  # the loop acts on it at the next step boundary
    assert signal.getsignal(sig) == before
    assert (
        f"{signal.Signals(sig).name} received: stopping after this step" in capsys.readouterr().err
    )
