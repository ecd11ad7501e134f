"""The bad-input corpus: every user-caused error exits 2 with one clear line (naming the key,
file or value, and the fix), prints no traceback, and leaves existing output untouched.

The cases are a table in bad_inputs/cases.py, one per line. They run in-process (fast);
a few run as real processes as well. Unless a case is marked `late`, the error must come
before the model is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bad_inputs.cases import CASES
from expertune.cli import main

SUBPROCESS_CASES = {
    "unknown-flag",
    "model-hub-offline",
    "output-dir-is-a-file",
    "resume-corrupt-checkpoint",
}


@pytest.fixture(scope="module")
def ws(tmp_path_factory, tiny_model_dir) -> Path:
    """A workspace with a finished stage-one expert in stage1/ and a folder of bad things."""
    from expertune.app.demo import write_configs
    from expertune.data.demo_images import make_demo_images

    work = tmp_path_factory.mktemp("bad-inputs")
    shutil.copytree(tiny_model_dir, work / "tiny-model")
    make_demo_images(work / "data", n=4)
    write_configs(work, steps=1)
    assert main(["train", "--config", str(work / "config/stage1.env"), "--report_to=none"]) == 0
    _make_bad_things(work, work / "bad")
    return work


def _make_bad_things(work: Path, bad: Path) -> None:
    bad.mkdir()
    (bad / "not-diffusers").mkdir()
    (bad / "not-diffusers" / "README.md").write_text("just a folder\n")
    for name, cls in (("flux", "FluxPipeline"), ("sd15", "StableDiffusionPipeline")):
        (bad / name).mkdir()
        (bad / name / "model_index.json").write_text(json.dumps({"_class_name": cls}))
    (bad / "model.ckpt").write_bytes(b"never unpickled")
    shutil.copytree(work / "tiny-model", bad / "pickle-model")
    unet = bad / "pickle-model" / "unet"
    (unet / "diffusion_pytorch_model.safetensors").unlink()
    (unet / "diffusion_pytorch_model.bin").write_bytes(b"never unpickled")
    (bad / "a-file.txt").write_text("not a folder\n")
    (bad / "empty-data").mkdir()
    (bad / "empty-data" / "notes.txt").write_text("no images here\n")
    (bad / "empty-data" / "broken.png").write_bytes(b"not a png")
    (bad / "dataloader-malformed.json").write_text('[{"id": "x",\n')
    (bad / "dataloader-no-images.json").write_text('[{"id": "t", "dataset_type": "text_embeds"}]')
    missing = [{"id": "x", "type": "local", "instance_data_dir": str(work / "no-such-images")}]
    (bad / "dataloader-missing-folder.json").write_text(json.dumps(missing))
    (bad / "broken.env").write_text(
        f'export MODEL_NAME="{work / "tiny-model"}"\nexport SEED=1\nthis is not a setting\n'
    )
    (bad / "config.yaml").write_text("learning_rate: 1\n")
    (bad / "bad.json").write_text('{"learning_rate": }\n')
    (bad / "bad.toml").write_text("learning_rate = \n")
    for name, prediction in (("eps-expert", "epsilon"), ("v-expert", "v_prediction")):
        (bad / name / "scheduler").mkdir(parents=True)
        index = {"_class_name": "StableDiffusionXLPipeline"}
        (bad / name / "model_index.json").write_text(json.dumps(index))
        config = {"prediction_type": prediction}
        (bad / name / "scheduler" / "scheduler_config.json").write_text(json.dumps(config))
    (bad / "empty-out").mkdir()
    (bad / "folder.png").mkdir()
    shutil.copytree(bad / "v-expert", bad / "truncated-record")
    (bad / "truncated-record" / "expertune.json").write_text('{"format": 2, "band": [0,')
    shutil.copytree(bad / "v-expert", bad / "list-record")
    (bad / "list-record" / "expertune.json").write_text("[1, 2]")
    shutil.copytree(bad / "v-expert", bad / "bin-only")
    (bad / "bin-only" / "unet").mkdir()
    (bad / "bin-only" / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"never unpickled")
    shutil.copytree(work / "stage1", bad / "corrupt-out", symlinks=True)
    weights = bad / "corrupt-out" / "checkpoint-1" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    _make_bad_runs(work, bad)
    _make_bad_models(work, bad)
    _make_bad_config_files(work, bad)


def _make_bad_config_files(work: Path, bad: Path) -> None:
    """Repeated keys, byte-order marks, other encodings, required variables, bad dataloaders."""
    model, data = work / "tiny-model", work / "data"
    bom = b"\xef\xbb\xbf"
    (bad / "repeat.json").write_text(
        f'{{"model_name": "{model}",\n "learning_rate": 1e-4,\n "learning_rate": 1}}\n'
    )
    (bad / "repeat.toml").write_text(f'model_name = "{model}"\nseed = 1\nseed = 2\n')
    for name, body in (
        ("bom.json", f'{{"model_name": "{model}", "learning_rate": -1}}'),
        ("bom.toml", f'model_name = "{model}"\nlearning_rate = -1\n'),
        ("bom.env", f'export MODEL_NAME="{model}"\nexport SEED=x\n'),
    ):
        (bad / name).write_bytes(bom + body.encode())
    latin1 = {
        "latin1.json": f'{{"model_name": "{model}",\n"validation_prompt": "caf\xe9"}}',
        "latin1.env": f'export MODEL_NAME="{model}"\n\nexport VALIDATION_PROMPT=caf\xe9\n',
    }
    for name, body in latin1.items():
        (bad / name).write_bytes(body.encode("latin-1"))
    stage1 = (work / "config" / "stage1.env").read_text()
    for name, lines in (
        ("required.env", 'export OUTPUT_DIR="${RUNS:?set RUNS to your runs folder}/x"\n'),
        ("required-no-colon.env", "export OUTPUT_DIR=${RUNS?}\n"),
        ("required-empty.env", 'export RUNS=""\nexport OUTPUT_DIR="${RUNS:?RUNS is empty}/x"\n'),
    ):
        (bad / name).write_text(stage1 + lines)
    for name, entry in (
        ("dataloader-type-s3.json", {"type": "aws"}),
        ("dataloader-bad-resolution.json", {"resolution": "big"}),
        ("dataloader-bad-crop-style.json", {"crop": True, "crop_style": "middle"}),
    ):
        dataset = {"id": "x", "type": "local", "instance_data_dir": str(data), **entry}
        (bad / name).write_text(json.dumps([dataset], indent=1))
    from PIL import Image

    (bad / "gif-data").mkdir()
    Image.new("RGB", (64, 64)).save(bad / "gif-data" / "a.gif")
    (bad / "gif-data" / "a.txt").write_text("a captioned gif\n")
    (bad / "link-data").mkdir()
    (bad / "link-data" / "a.png").symlink_to(bad / "deleted.png")
    cached = {"id": "x", "type": "local", "instance_data_dir": str(data),
              "cache_dir_vae": str(bad / "a-file.txt" / "vae")}  # fmt: skip
    (bad / "dataloader-cache-under-a-file.json").write_text(json.dumps([cached]))
    lines = ['"id": "x"', '"type": "local"', f'"instance_data_dir": "{data}"', '"resolution": 64']
    (bad / "dataloader-repeat.json").write_text("[{" + ",\n".join(lines) + ',\n"resolution": 128}]')


def _make_bad_runs(work: Path, bad: Path) -> None:
    """Crashed runs (checkpoints, no published expert), a dangling link, a held lock."""
    from filelock import FileLock

    from expertune.train import checkpoint as ckpt
    from expertune.train.output_lock import INFO_FILE, LOCK_FILE

    crashed = bad / "crashed-out"
    shutil.copytree(work / "stage1", crashed, symlinks=True)
    (crashed / "expertune.json").unlink()  # it crashed before publishing
    later = bad / "crashed-at-5"
    shutil.copytree(crashed, later, symlinks=True)
    (later / "checkpoint-1").rename(later / "checkpoint-5")
    state = json.loads((later / "checkpoint-5" / "state.json").read_text())
    (later / "checkpoint-5" / "state.json").write_text(json.dumps({**state, "step": 5}))
    ckpt._seal(later / "checkpoint-5")
    (bad / "unfinished-out" / "checkpoint-3").mkdir(parents=True)  # no COMPLETE marker
    (bad / "dangling-out").symlink_to(bad / "nowhere" / "out")
    locked = bad / "locked-out"
    locked.mkdir()
    lock = FileLock(locked / LOCK_FILE)
    lock.acquire()
    _HELD.append(lock)
    (locked / INFO_FILE).write_text(json.dumps({"pid": 4242, "host": "elsewhere", "started": 0}))
    res96 = [{"id": "res96", "type": "local", "instance_data_dir": str(work / "data"),
              "resolution": 96, "resolution_type": "pixel"}]  # fmt: skip
    (bad / "dataloader-res-96.json").write_text(json.dumps(res96))


_HELD: list = []  # locks the workspace holds for the whole module, as a running job would


def _make_bad_models(work: Path, bad: Path) -> None:
    """SDXL-labelled folders whose configs do not fit SDXL, and unreadable model indexes."""
    unets = {
        "sd15-unet": {"addition_embed_type": None, "cross_attention_dim": 768},
        "wide-unet": {"cross_attention_dim": 2048},
        "refiner-unet": {"projection_class_embeddings_input_dim": 72},
    }
    for name, changes in unets.items():
        shutil.copytree(work / "tiny-model", bad / name)
        config = bad / name / "unet" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), **changes}))
    for name, raw in (
        ("index-garbage", b'{"_class_name": "StableDiffusionXLPipeline",,}'),
        ("index-list", b'["StableDiffusionXLPipeline"]'),
        ("index-latin1", '{"_class_name": "Stable\xe9"}'.encode("latin-1")),
    ):
        (bad / name).mkdir()
        (bad / name / "model_index.json").write_bytes(raw)


def _render(command: str, ws: Path, scratch: Path) -> list[str]:
    """The command's arguments with {placeholders} replaced (derived configs go to scratch)."""
    paths = {
        "ws": ws,
        "bad": ws / "bad",
        "model": ws / "tiny-model",
        "out": ws / "stage1",
        "stage1": ws / "config" / "stage1.env",
        "stage2": ws / "config" / "stage2.env",
    }

    def one(match: re.Match) -> str:
        name, extra = match.group(1), match.group(2)
        if not extra:
            return str(paths[name])
        derived = scratch / f"derived-{len(list(scratch.iterdir()))}.env"
        line = extra[1:].replace("{{", "{").replace("}}", "}")
        derived.write_text(paths[name].read_text() + line + "\n")
        return str(derived)

    args = shlex.split(command)
    pattern = re.compile(r"\{(\w+)(\+[^{}]*(?:\{\{\w+\}\}[^{}]*)*)?\}")
    return [pattern.sub(one, a).replace("{{", "{").replace("}}", "}") for a in args]


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (links not followed) with its content digest or link target."""
    seen = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                seen[rel] = ("link", os.readlink(path))
            elif path.is_file():
                seen[rel] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
            else:
                seen[rel] = ("dir",)
    return seen


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network here; the hub client must say so at once."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.mark.parametrize("command, words, late", CASES)
def test_bad_input_exits_2_with_one_line_and_touches_nothing(
    ws, tmp_path, monkeypatch, capsys, command, words, late
):
    if not late:  # the error must come before any expensive work

        def no_model(cfg):
            raise AssertionError("the model was loaded before the error was found")

        monkeypatch.setattr("expertune.train.setup.setup_model", no_model)
    argv = _render(command, ws, tmp_path)
    before = _snapshot(ws)
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("expertune: "), err
    for word in words:
        assert word.replace("{{", "{").replace("}}", "}") in lines[0], (word, lines[0])
    assert _snapshot(ws) == before


def test_the_corpus_is_large_and_ids_are_unique():
    ids = [c.id for c in CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)
    assert set(ids) >= SUBPROCESS_CASES


@pytest.mark.slow
@pytest.mark.parametrize("command, words, late", [c for c in CASES if c.id in SUBPROCESS_CASES])
def test_as_a_real_process_no_traceback(ws, tmp_path, command, words, late):
    before = _snapshot(ws)
    result = subprocess.run(
        [sys.executable, "-m", "expertune.cli", *_render(command, ws, tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words[0].replace("{{", "{").replace("}}", "}") in lines[0]
    assert _snapshot(ws) == before


def test_config_env_is_parsed_never_executed(ws, tmp_path, capsys):
    marks = [tmp_path / f"ran-{i}" for i in range(4)]
    env = tmp_path / "sneaky.env"
    env.write_text(
        f'export MODEL_NAME="$(touch {marks[0]})"\n'
        f"export VALIDATION_PROMPT=`touch {marks[1]}`\n"
        f'export OUTPUT_DIR="{tmp_path}/out-$(touch {marks[2]})"\n'
        f'export TRAINER_EXTRA_ARGS="--seed=1; touch {marks[3]}"\n'
    )
    assert main(["config", "show", "--config", str(env)]) == 2  # '; touch' is not a flag
    env.write_text(env.read_text().replace(f"; touch {marks[3]}", ""))
    assert main(["config", "show", "--config", str(env), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["pretrained_model_name_or_path"] == f"$(touch {marks[0]})"
    assert shown["validation_prompt"] == f"`touch {marks[1]}`"
    assert main(["train", "--config", str(env)]) == 2  # MODEL_NAME names no folder
    assert not any(m.exists() for m in marks)
