"""MODEL_NAME=expertune/tiny-sdxl: the embedded tiny model, built once per cache folder
(atomically, under a lock), reused afterwards; near misses are one-line errors.

Every test points the build folder at tmp_path (argument or HOME), never the real home.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

import pytest

from expertune.cli import main
from expertune.errors import ModelReferenceError
from expertune.models import embedded, tiny
from expertune.models.embedded import TINY_MODEL_NAME, tiny_model_folder
from expertune.models.load import load_components, resolve_model_path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def builds(monkeypatch) -> list[Path]:
    """Counts real builds of the tiny model (each call appends its target folder)."""
    calls: list[Path] = []
    real = tiny.build_tiny_sdxl

    def counting(out_dir, **kwargs):
        calls.append(Path(out_dir))
        return real(out_dir, **kwargs)

    monkeypatch.setattr(tiny, "build_tiny_sdxl", counting)
    return calls


def write_env(folder: Path, model: str, data: Path | None = None) -> Path:
    lines = [f'MODEL_NAME="{model}"', f'OUTPUT_DIR="{folder / "out"}"', "RESOLUTION=64"]
    lines += [f'INSTANCE_DIR="{data or folder / "data"}"', f'CACHE_DIR="{folder / "cache"}"']
    (folder / "config.env").write_text("\n".join(lines) + "\n")
    return folder / "config.env"


def test_config_show_needs_no_model(tmp_path, monkeypatch, capsys, builds):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        main(["config", "show", "--config", str(write_env(tmp_path, TINY_MODEL_NAME)), "--json"])
        == 0
    )
    shown = json.loads(capsys.readouterr().out)
    assert shown["pretrained_model_name_or_path"] == TINY_MODEL_NAME
    assert builds == [] and not (tmp_path / "home").exists()


def test_built_once_under_concurrency_reused_and_deterministic(tmp_path, builds, tiny_model_dir):
    found: list[Path] = []
    start = threading.Barrier(3)  # three jobs asking at the same moment

    def job() -> None:
        start.wait()
        found.append(tiny_model_folder(tmp_path))

    threads = [threading.Thread(target=job) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and len(set(found)) == 1
    (folder,) = set(found)
    assert folder.parent == tmp_path and folder.name.startswith("tiny-sdxl-")
    assert builds[0].parent == tmp_path and not builds[0].exists()  # renamed into place
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [folder.name]
    assert resolve_model_path(TINY_MODEL_NAME, model_cache_dir=tmp_path) == folder
    assert len(builds) == 1  # reused
    weights = Path("unet") / "diffusion_pytorch_model.safetensors"
    assert digest(folder / weights) == digest(tiny_model_dir / weights)  # seed 0, as the tests'
    parts = load_components(TINY_MODEL_NAME, model_cache_dir=tmp_path)
    assert parts.model_path == folder and parts.unet.config.addition_embed_type == "text_time"


def test_the_default_folder_is_under_home_and_a_new_builder_gets_a_new_one(
    tmp_path, monkeypatch, builds
):
    monkeypatch.setenv("HOME", str(tmp_path))
    first = resolve_model_path(TINY_MODEL_NAME)
    assert first.parent == tmp_path / ".cache" / "expertune"
    monkeypatch.setattr(embedded, "build_tag", lambda: "changedbuild")
    second = resolve_model_path(TINY_MODEL_NAME)
    assert second != first and second.name.endswith("-changedbuild") and len(builds) == 2


def test_a_failed_build_leaves_nothing_and_says_so_in_one_line(tmp_path, monkeypatch):
    def failing(out_dir, **kwargs):
        (Path(out_dir) / "unet").mkdir()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tiny, "build_tiny_sdxl", failing)
    with pytest.raises(ModelReferenceError) as caught:
        tiny_model_folder(tmp_path)
    message = str(caught.value)
    assert "\n" not in message and "No space left on device" in message and str(tmp_path) in message
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


@pytest.mark.parametrize(
    "typo",
    ["expertune/tiny-sdx", "Expertune/Tiny-SDXL", "expertun/tiny-sdxl", "expertune-tiny-sdxl"],
)
def test_a_near_miss_suggests_the_reserved_name(tmp_path, typo, builds):
    with pytest.raises(ModelReferenceError) as caught:
        resolve_model_path(typo, model_cache_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and repr(TINY_MODEL_NAME) in message and repr(typo) in message
    assert builds == []


def test_a_typo_in_config_env_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "data").mkdir()
    assert main(["train", "--config", str(write_env(tmp_path, "expertune/tiny-sdx"))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'expertune/tiny-sdxl'" in err[0]


@pytest.mark.slow
def test_training_with_the_reserved_name(tmp_path, monkeypatch, builds):
    from expertune.data.demo_images import make_demo_images

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    data = tmp_path / "images"
    make_demo_images(data, n=2, size=64)
    config = str(write_env(tmp_path, TINY_MODEL_NAME, data))
    for run in ("first", "second"):
        flags = [f"--output_dir={tmp_path / run}", "--max_train_steps=2", "--report_to=none"]
        assert main(["train", "--config", config, *flags]) == 0
        record = json.loads((tmp_path / run / "metrics.jsonl").read_text().splitlines()[-1])
        assert record["step"] == 2
        assert (tmp_path / run / "model_index.json").is_file()
    assert len(builds) == 1  # the second job reused the first job's build
    assert builds[0].parent == tmp_path / "home" / ".cache" / "expertune"


def test_the_built_folder_is_readable_by_every_user(tmp_path, builds):
    folder = tiny_model_folder(tmp_path)
    assert folder.stat().st_mode & 0o555 == 0o555  # not mkdtemp's 0700: a shared cache works
