"""The training commands hold the cyclic collector off while they import their libraries
and settle it (freeze + on) as the run starts; other callers of main() are untouched."""

from __future__ import annotations

import gc

import pytest

from expertune import cli, startup_gc
from expertune.errors import ConfigError


@pytest.fixture
def collector():
    """The collector on and nothing frozen, before and after each test."""
    gc.unfreeze()
    assert gc.isenabled()
    yield
    startup_gc.settle()
    gc.unfreeze()
    gc.enable()


def test_hold_then_settle_freezes_what_is_alive(collector):
    startup_gc.hold()
    assert not gc.isenabled()
    alive = [object() for _ in range(3)]
    startup_gc.settle()
    assert gc.isenabled() and gc.get_freeze_count() > len(alive)
    frozen = gc.get_freeze_count()
    startup_gc.settle()  # settled already: nothing more is frozen
    assert gc.get_freeze_count() == frozen


def test_settle_without_hold_changes_nothing(collector):
    startup_gc.settle()
    assert gc.isenabled() and gc.get_freeze_count() == 0


def _train(tmp_path, tiny_model_dir, fast_start: bool, monkeypatch) -> dict:
    """`expertune train` up to the run's preflight (which refuses, to stop there)."""
    import expertune.train.run as run

    seen: dict = {}

    def record_at_start(command):
        def wrapped(args):
            seen["at start"] = gc.isenabled()
            return command(args)

        return wrapped

    def preflight(cfg):
        seen["in the run"] = (gc.isenabled(), gc.get_freeze_count())
        raise ConfigError("stop here")

    monkeypatch.setitem(cli.COMMANDS, "train", record_at_start(cli.COMMANDS["train"]))
    monkeypatch.setattr(run, "preflight", preflight)
    (tmp_path / "data").mkdir()
    argv = [
        "train",
        f"--pretrained_model_name_or_path={tiny_model_dir}",
        f"--instance_data_dir={tmp_path / 'data'}",
        f"--output_dir={tmp_path / 'out'}",
    ]
    assert cli.main(argv, fast_start=fast_start) == cli.EXIT_USER_ERROR
    seen["after"] = gc.isenabled()
    return seen


def test_train_holds_the_collector_until_the_run_starts(
    collector, tmp_path, tiny_model_dir, monkeypatch
):
    seen = _train(tmp_path, tiny_model_dir, True, monkeypatch)
    assert seen["at start"] is False  # held while the command imports torch & co
    enabled, frozen = seen["in the run"]
    assert enabled and frozen > 0  # settled before preflight: the libraries are frozen
    assert seen["after"] is True


def test_main_called_in_process_leaves_the_collector_alone(
    collector, tmp_path, tiny_model_dir, monkeypatch
):
    seen = _train(tmp_path, tiny_model_dir, False, monkeypatch)
    assert seen["at start"] is True and seen["in the run"] == (True, 0)
