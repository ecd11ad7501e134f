"""Shared fixtures for the config tests: the seed's two config.env blocks and a file writer."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def stage1() -> Path:
    """The guide's stage-one config.env block, byte for byte."""
    return DATA / "seed_stage1.env"


@pytest.fixture
def stage2() -> Path:
    """The guide's stage-two block: only the lines it changes in stage one's file."""
    return DATA / "seed_stage2.env"


@pytest.fixture
def write(tmp_path: Path):
    """Write ``text`` to ``tmp_path / name`` and return the path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return _write
