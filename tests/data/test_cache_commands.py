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


def test_prune_keeps_entries_a_running_job_reads(built, capsys):
    import os

    from expertune.data.cache_use import Claim

    env, cache = built
    job = Claim()  # a running job that still trains on the removed image
    job.add(cache, {(e.kind, e.key) for e in Cache(cache).entries()})
    assert main(["cache", "prune", "--config", str(env), "--yes"]) == 0
    said = capsys.readouterr().out
    assert "deleted 0 entries" in said
    assert f"kept 2 entries that running jobs use (pid {os.getpid()} on " in said
    assert len(list(Cache(cache).entries())) == 8
    job.close()  # the job ended
    assert main(["cache", "prune", "--config", str(env), "--yes"]) == 0
    assert "deleted 2 entries" in capsys.readouterr().out


def test_a_dead_jobs_claim_is_stale_and_removed(built, capsys):
    import subprocess
    import sys

    env, cache = built
    script = (
        "import sys; from expertune.data.cache_use import Claim; "
        "Claim().add(sys.argv[1], [('latents', 'x' * 64)])"  # exits without closing it
    )
    subprocess.run([sys.executable, "-c", script, str(cache)], check=True)
    assert len(list((cache / ".in-use").glob("*.json"))) == 1
    assert main(["cache", "prune", "--config", str(env), "--yes"]) == 0
    assert "deleted 2 entries" in capsys.readouterr().out
    assert list((cache / ".in-use").glob("*.json")) == []


def test_a_job_claims_its_entries_while_its_data_lives(built, tiny_components):
    from expertune.config import load_config
    from expertune.data.cache_use import claimed
    from expertune.data.training_set import prepare_data

    env, cache = built
    cfg = load_config(str(env), [])
    data = prepare_data(cfg, tiny_components, global_batch=1, progress=False)
    entries, holders = claimed(cache)
    assert len(entries) == 6 and len(holders) == 1  # 3 images: latents and captions
    del data
    assert claimed(cache) == (set(), [])
