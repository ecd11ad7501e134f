"""Expert folders for the export tests: copies of the tiny model with an expertune.json."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from export_support import make_expert


@pytest.fixture(scope="module")
def epsilon_expert(tiny_model_dir, tmp_path_factory) -> Path:
    return make_expert(tiny_model_dir, tmp_path_factory.mktemp("eps") / "base", band=(200, 999))


@pytest.fixture(scope="module")
def vpred_expert(tiny_model_dir, tmp_path_factory) -> Path:
    scheduler = {
        "prediction_type": "v_prediction",
        "rescale_betas_zero_snr": True,
        "timestep_spacing": "trailing",
    }
    return make_expert(tiny_model_dir, tmp_path_factory.mktemp("v") / "vpred", scheduler=scheduler)


@pytest.fixture
def offline(monkeypatch):
    """No network at all: any connection attempt fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(self, address):
        raise AssertionError(f"network access to {address} during an offline export test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
