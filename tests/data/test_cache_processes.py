"""Real processes on one cache: two concurrent `expertune cache build`s make each entry
once, byte-identical to a single build; a build killed with SIGKILL leaves nothing that
reads back corrupt, and the next build completes it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from expertune.cli import main
from expertune.data.cache import OK, Cache
from expertune.data.demo_images import make_demo_images

IMAGES = 12
# A child that runs the real CLI with each VAE call slowed down, so builds overlap and a
# kill lands in the middle of one. Only the timing changes; every tensor is computed.
SLOW_CLI = """
import sys, time
import expertune.data.encode as encode
real = encode.encode_latents
def slow(vae, pixels):
    time.sleep(float(sys.argv[1]))
    return real(vae, pixels)
encode.encode_latents = slow
from expertune.cli import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.fixture(scope="module")
def env_file(tmp_path_factory, tiny_model_dir) -> Path:
    root = tmp_path_factory.mktemp("procs")
    make_demo_images(root / "data", n=IMAGES, size=96)
    path = root / "stage.env"
    path.write_text(
        f'export MODEL_NAME="{tiny_model_dir}"\n'
        f'export INSTANCE_DIR="{root / "data"}"\n'
        "export RESOLUTION=64\n"
        f'export OUTPUT_DIR="{root / "out"}"\n'
    )
    return path


def slow_build(env_file: Path, cache: Path, delay: float, batch: int) -> subprocess.Popen:
    args = ["cache", "build", "--config", str(env_file), f"--cache_dir={cache}"]
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_CLI, str(delay), *args, f"--vae_batch_size={batch}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def made(output: str) -> tuple[int, int]:
    found = re.search(r"latents (\d+) made, captions (\d+) made", output)
    assert found, output
    return int(found.group(1)), int(found.group(2))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.safetensors")}


@pytest.mark.slow
def test_two_builders_make_each_entry_once_and_the_same_bytes(env_file, tmp_path, capsys):
    shared = tmp_path / "shared"
    procs = [slow_build(env_file, shared, 0.2, 2) for _ in range(2)]
    outputs = [proc.communicate(timeout=240) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    counts = [made(out) for out, _ in outputs]
    single = tmp_path / "single"
    assert (
        main(
            [
                "cache",
                "build",
                "--config",
                str(env_file),
                f"--cache_dir={single}",
                "--vae_batch_size=2",
            ]
        )
        == 0
    )
    latents, captions = made(capsys.readouterr().out)
    assert latents == IMAGES
    assert sum(c[0] for c in counts) == IMAGES and sum(c[1] for c in counts) == captions, counts
    assert tree(shared) == tree(single)  # same files, same bytes
    cache = Cache(shared)
    assert all(cache.check(e.kind, e.key) == OK for e in cache.entries())
    assert not cache.leftovers()


@pytest.mark.slow
def test_a_build_killed_midway_leaves_no_corrupt_entry(env_file, tmp_path, capsys):
    cache_dir = tmp_path / "cache"
    proc = slow_build(env_file, cache_dir, 0.3, 1)
    deadline = time.monotonic() + 120
    while len(list((cache_dir / "latents").rglob("*.safetensors"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    cache = Cache(cache_dir)
    survivors = list(cache.entries())
    assert 3 <= len(survivors) < IMAGES
    assert all(cache.check(e.kind, e.key) == OK for e in survivors)
    assert main(["cache", "build", "--config", str(env_file), f"--cache_dir={cache_dir}"]) == 0
    latents, _ = made(capsys.readouterr().out)
    assert latents == IMAGES - len([e for e in survivors if e.kind == "latents"])
    assert main(["cache", "verify", "--config", str(env_file), f"--cache_dir={cache_dir}"]) == 0
    assert len([e for e in cache.entries() if e.kind == "latents"]) == IMAGES
