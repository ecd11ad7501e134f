"""`expertune cache info|verify|prune`: counts and sizes, checksums, and pruning only what
no config uses, and only when asked to."""

from __future__ import annotations

from pathlib import Path

import pytest

from expertune.cli import main
from expertune.data.cache import Cache
from expertune.data.demo_images import make_demo_images


@pytest.fixture
def built(tmp_path, tiny_model_dir, capsys) -> tuple[Path, Path]:
    images = make_demo_images(tmp_path / "data", n=4, size=96)
    env = tmp_path / "stage.env"
    env.write_text(
        f'MODEL_NAME="{tiny_model_dir}"\nINSTANCE_DIR="{tmp_path / "data"}"\n'
        f'CACHE_DIR="{tmp_path / "cache"}"\nRESOLUTION=64\n'
    )
    assert main(["cache", "build", "--config", str(env)]) == 0
    out = capsys.readouterr().out
    assert "4 images ready" in out and "latents 4 made, captions 4 made" in out
    assert main(["cache", "build", "--config", str(env)]) == 0  # warm: nothing made
    assert "latents 0 made, captions 0 made, 8 entries found" in capsys.readouterr().out
    images[0].unlink()  # its latents and caption are now used by nothing
    return env, tmp_path / "cache"


def test_info_counts_entries_without_a_model(built, capsys):
    env, cache = built
    assert main(["cache", "info", "--config", str(env)]) == 0
    assert f"{cache}: latents: 4 entries" in capsys.readouterr().out


def test_verify_finds_and_deletes_corrupt_entries(built, capsys):
    env, cache = built
    entry = next(Cache(cache).entries())
    entry.path.write_bytes(entry.path.read_bytes()[:-7])
    assert main(["cache", "verify", "--config", str(env)]) == 2
    err = capsys.readouterr().err
    assert "1 of 8 cache entries are corrupt" in err and entry.path.name in err
    assert main(["cache", "verify", "--config", str(env), "--delete"]) == 0
    assert not entry.path.exists()


def test_prune_lists_first_and_deletes_only_with_yes(built, capsys):
    env, cache = built
    assert main(["cache", "prune", "--config", str(env)]) == 0
    assert "would delete 2 entries" in capsys.readouterr().out
    assert len(list(Cache(cache).entries())) == 8
    assert main(["cache", "prune", "--config", str(env), "--yes"]) == 0
    assert "deleted 2 entries" in capsys.readouterr().out
    assert len(list(Cache(cache).entries())) == 6
    assert main(["cache", "build", "--config", str(env)]) == 0
    assert "latents 0 made" in capsys.readouterr().out  # nothing the config uses was lost
