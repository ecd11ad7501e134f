"""`expertune moe`: --parallel equals sequential, resume skips finished experts, a parent
is trained and split (parent_steps), and baseline = true ends with OUTPUT_ROOT/report.html."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from expertune.app.demo import prepare_workdir
from expertune.cli import main

pytestmark = pytest.mark.slow
STEPS = 4


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("moe-split")
    prepare_workdir(work, STEPS, images=4, size=64)
    return work


def _config(work: Path, name: str, head: str = "", shared: str = "") -> tuple[Path, Path]:
    root = work / name
    path = work / f"{name}.toml"
    path.write_text(
        f'output_root = "{root}"\nedges = [0, 400, 1000]\n{head}\n[shared]\n'
        f'pretrained_model_name_or_path = "{work / "tiny-model"}"\n'
        f'instance_data_dir = "{work / "data"}"\n'
        f"max_train_steps = {STEPS}\ncheckpointing_steps = 2\nresolution = 64\n"
        f'report_to = "none"\ntrain_batch_size = 2\nlearning_rate = 1e-4\n{shared}'
        '[[experts]]\nname = "high"\n'
        '[[experts]]\nname = "low"\nmodel_type = "lora"\nlora_rank = 4\n'
    )
    return path, root


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    files = [folder / "unet" / "diffusion_pytorch_model.safetensors"]
    files += sorted(folder.glob("*.lora.safetensors"))
    out = {}
    for f in files:
        out |= {f"{f.name}:{k}": v for k, v in load_file(f).items()}
    return out


def _identical(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def sequential(work) -> Path:
    config, root = _config(work, "sequential")
    assert main(["moe", "--config", str(config)]) == 0
    return root


def test_parallel_two_gives_bit_identical_experts(work, sequential):
    config, root = _config(work, "parallel")
    assert main(["moe", "--config", str(config), "--parallel", "2"]) == 0
    for name in ("high", "low"):
        assert _identical(sequential / name, root / name), name
        summary = json.loads((root / name / "run_summary.json").read_text())
        assert summary["encoder_forward_passes"] == 0  # the caches were filled before
        assert (root / "logs" / f"{name}.log").is_file()
    assert json.loads((root / "moe.json").read_text())["experts"][0]["name"] == "high"


def test_interrupted_run_resumes_skipping_finished_experts(work, sequential, monkeypatch):
    config, root = _config(work, "resumed")
    assert main(["moe", "--config", str(config), "--only", "high"]) == 0
    # low is cut off after its first checkpoint (step 2): trained with fewer steps
    assert main(["moe", "--config", str(config), "--only", "low", "--max_train_steps=2"]) == 0
    assert not (root / "moe.json").exists()
    calls: list[int] = []
    real = UNet2DConditionModel.forward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", counted)
    argv = ["moe", "--config", str(config), "--resume_from_checkpoint", "latest"]
    assert main(argv) == 0
    assert len(calls) == STEPS - 2  # high skipped; low ran steps 3 and 4 only
    steps = [
        json.loads(x)["step"] for x in (root / "low" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4]
    for name in ("high", "low"):
        assert _identical(sequential / name, root / name), name
    assert (root / "moe.json").is_file()


def test_parent_split_and_baseline_report(work):
    head = "parent_steps = 2\nbaseline = true\n"
    shared = 'validation_prompt = "a red circle on a blue background"\n'
    shared += "validation_num_inference_steps = 4\neval_timesteps = 3\n"
    config, root = _config(work, "split", head, shared)
    assert main(["moe", "--config", str(config), "--dry-run"]) == 0
    assert not root.exists()
    assert main(["moe", "--config", str(config)]) == 0
    parent = json.loads((root / "parent" / "expertune.json").read_text())
    assert parent["band"] == [0, 999] and parent["steps"] == 2
    for name in ("high", "low"):
        record = json.loads((root / name / "expertune.json").read_text())
        assert record["parent"]["path"] == str(root / "parent")
        assert record["parent"]["kind"] == "expert" and record["parent"]["steps"] == 2
    baseline = json.loads((root / "baseline" / "expertune.json").read_text())
    assert baseline["band"] == [0, 999] and baseline["steps"] == 2 * STEPS
    assert baseline["parent"]["path"] == str(root / "parent")  # the same start as the experts
    result = json.loads((root / "report" / "eval_loss.json").read_text())
    assert [row["band"] for row in result["bands"]] == [[400, 999], [0, 399]]
    assert all(row["baseline_loss"] > 0 and row["expert_loss"] > 0 for row in result["bands"])
    page = (root / "report.html").read_text()
    for section in ("Band plan", "Training loss", "Eval loss per band", "Through the chain"):
        assert section in page
    assert "data:image/png;base64," in page and "high [400, 999]" in page
    assert (root / "report" / "chain.png").is_file() and "through the chain (2 experts)" in page
    # validation through the chain as it stood: high ran before low existed
    high = json.loads(
        (root / "high" / "validation" / f"step-{STEPS}" / "validation.json").read_text()
    )
    low = json.loads(
        (root / "low" / "validation" / f"step-{STEPS}" / "validation.json").read_text()
    )
    assert high["chain"] == [f"stand-in {root / 'parent'} (low not ready)", "this expert (live)"]
    assert low["chain"] == ["this expert (live)", str(root / "high")]
    assert {e["kind"] for e in high["images"]} == {"expert", "chain"}
    assert {e["kind"] for e in low["images"]} == {"chain", "dataset"}  # prompts via the chain
    manifest = json.loads((root / "moe.json").read_text())
    assert manifest["parent"] == "parent" and manifest["baseline"] == "baseline"


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_run_trains_on_two_launched_processes(work, tmp_path):
    """torchrun (as accelerate launch) x 2 processes: the parent and each expert train on
    both ranks in turn, each expert starts from the parent rank 0 has just published, and
    rank 0 alone writes the records and the manifest."""
    import os
    import subprocess
    import sys

    config, root = _config(work, "launched", "parent_steps = 2\n")
    argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    argv += ["--master_port", str(_port()), "-m", "expertune", "moe", "--config", str(config)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count(f"wrote {root / 'moe.json'}") == 1  # rank 0 only
    for name, steps in (("parent", 2), ("high", STEPS), ("low", STEPS)):
        summary = json.loads((root / name / "run_summary.json").read_text())
        assert summary["samples"] == steps * 2 * 2, name  # 2 processes x batch 2 each step
        metrics = (root / name / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(x)["step"] for x in metrics] == list(range(1, steps + 1)), name
    for name in ("high", "low"):
        record = json.loads((root / name / "expertune.json").read_text())
        assert record["parent"]["path"] == str(root / "parent"), name
        summary = json.loads((root / name / "run_summary.json").read_text())
        assert summary["encoder_forward_passes"] == 0  # the parent's run filled the cache
    assert [e["name"] for e in json.loads((root / "moe.json").read_text())["experts"]] == [
        "high",
        "low",
    ]


def test_parallel_under_a_launcher_is_one_line(work, monkeypatch, capsys):
    config, root = _config(work, "parallel-launched")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["moe", "--config", str(config), "--parallel", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--parallel 2" in err[0] and "accelerate launch" in err[0]
    assert not root.exists()
