"""`expertune moe` end to end on the tiny model: K experts, shared caches, one manifest."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from expertune.app.demo import prepare_workdir
from expertune.cli import main

pytestmark = pytest.mark.slow
STEPS = 3


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("moe")
    prepare_workdir(work, STEPS, images=4, size=64)
    return work


def _config(work: Path, head: str) -> Path:
    path = work / f"moe-{abs(hash(head))}.toml"
    root = work / f"out-{abs(hash(head))}"
    path.write_text(
        f'output_root = "{root}"\n{head}\n[shared]\n'
        f'pretrained_model_name_or_path = "{work / "tiny-model"}"\n'
        f'instance_data_dir = "{work / "data"}"\n'
        f'max_train_steps = {STEPS}\nresolution = 64\nreport_to = "none"\n'
        'prediction_type = "v_prediction"\nrescale_betas_zero_snr = true\n'
        '[[experts]]\nname = "high"\n[[experts]]\nname = "mid"\n'
        '[[experts]]\nname = "low"\nmodel_type = "lora"\nlora_rank = 4\n'
    )
    return path


@pytest.mark.parametrize("head", ["edges = [0, 250, 600, 1000]", "snr = [4.0, 0.25]"])
def test_three_experts_train_in_their_bands_on_one_cache(work, head, monkeypatch):
    received: list[list[int]] = []
    real = UNet2DConditionModel.forward

    def hooked(self, sample, timestep, *args, **kwargs):
        received.append([int(t) for t in timestep.flatten()])
        return real(self, sample, timestep, *args, **kwargs)

    monkeypatch.setattr(UNet2DConditionModel, "forward", hooked)
    config = _config(work, head)
    assert main(["moe", "--config", str(config)]) == 0
    root = Path(json.loads(config.read_text().split("\n")[0].split("=", 1)[1]))
    manifest = json.loads((root / "moe.json").read_text())
    names = [e["name"] for e in manifest["experts"]]
    assert names == ["high", "mid", "low"]
    bands = [e["band"] for e in manifest["experts"]]
    assert bands[0][1] == 999 and bands[-1][0] == 0
    assert all(a[0] == b[1] + 1 for a, b in itertools.pairwise(bands))
    assert manifest["parameterisation"]["prediction_type"] == "v_prediction"
    # what each expert's UNet really received during training, in training order
    assert len(received) == 3 * STEPS
    for i, (name, (lo, hi)) in enumerate(zip(names, bands, strict=True)):
        seen = [t for call in received[i * STEPS : (i + 1) * STEPS] for t in call]
        assert all(lo <= t <= hi for t in seen), (name, seen)
        record = json.loads((root / name / "expertune.json").read_text())
        assert record["band"] == [lo, hi] and record["name"] == name
        steps = [json.loads(x) for x in (root / name / "metrics.jsonl").read_text().splitlines()]
        assert all(lo <= r["timestep_min"] <= r["timestep_max"] <= hi for r in steps)
        summary = json.loads((root / name / "run_summary.json").read_text())
        if i > 0:
            assert summary["encoder_forward_passes"] == 0, name
    assert (root / "low" / "pytorch_lora_weights.safetensors").is_file()
    named = root / "low" / "low.lora.safetensors"  # one LoRA per expert, named after it
    ours, default = load_file(named), load_file(root / "low" / "pytorch_lora_weights.safetensors")
    assert ours.keys() == default.keys() and all(torch.equal(ours[k], default[k]) for k in ours)
    assert not (root / "high" / "high.lora.safetensors").exists()  # a full expert has none
    # a second run finds every expert finished and trains nothing
    received.clear()
    assert main(["moe", "--config", str(config)]) == 0
    assert received == []
