"""`expertune export` as a user meets it: results on success, one line and exit 2 otherwise."""

from __future__ import annotations

import json

import pytest
from export_support import make_expert
from safetensors.torch import load_file

from expertune.cli import main


def _export(capsys, *argv):
    code = main(["export", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, target, *argv):
    """Exit 2, exactly one line on stderr, and no file at `target` (nor a temp beside it)."""
    before = sorted(p.name for p in target.parent.iterdir()) if target.parent.is_dir() else []
    code, _, err = _export(capsys, *argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    after = sorted(p.name for p in target.parent.iterdir()) if target.parent.is_dir() else []
    assert after == before
    return err


def test_single_file_from_the_command_line(epsilon_expert, tmp_path, capsys):
    target = tmp_path / "out.safetensors"
    code, out, _ = _export(capsys, epsilon_expert, "--single-file", target)
    assert code == 0 and f"wrote {target}" in out
    assert "model.diffusion_model.conv_out.weight".replace("conv_out", "out.2") in load_file(target)


def test_refusals(epsilon_expert, tiny_model_dir, tmp_path, capsys):
    target = tmp_path / "out.safetensors"
    err = _refused(capsys, target, tiny_model_dir, "--single-file", target)
    assert "expertune.json" in err  # a plain diffusers folder is not an expert
    err = _refused(capsys, target, epsilon_expert, "--lora", target)
    assert "--single-file" in err  # a full expert has no adapter
    err = _refused(capsys, target, epsilon_expert, "--single-file", target, "--dtype", "fp8")
    assert "--dtype" in err
    err = _refused(capsys, target, epsilon_expert, "--single-file", target, "--format", "kohya")
    assert "--format" in err
    assert _refused(capsys, target, tmp_path / "nowhere", "--single-file", target)


def test_missing_weights_are_refused(epsilon_expert, tmp_path, capsys):
    broken = make_expert(epsilon_expert, tmp_path / "broken")
    (broken / "vae" / "diffusion_pytorch_model.safetensors").unlink()
    target = tmp_path / "out.safetensors"
    err = _refused(capsys, target, broken, "--single-file", target)
    assert "vae" in err


def test_existing_output_is_kept_unless_overwrite(epsilon_expert, tmp_path, capsys):
    target = tmp_path / "out.safetensors"
    target.write_bytes(b"precious")
    _refused(capsys, target, epsilon_expert, "--single-file", target)
    assert target.read_bytes() == b"precious"
    code, _, _ = _export(capsys, epsilon_expert, "--single-file", target, "--overwrite")
    assert code == 0 and len(load_file(target)) > 400
    assert [p.name for p in tmp_path.iterdir()] == ["out.safetensors"]  # no temp left


@pytest.fixture
def moe_root(epsilon_expert, vpred_expert, tmp_path):
    """A two-expert chain: base by a relative path, refiner (v-pred) by an absolute one."""
    root = tmp_path / "chain"
    root.mkdir()
    make_expert(epsilon_expert, root / "high", band=(200, 999))
    refiner = make_expert(vpred_expert, tmp_path / "elsewhere" / "low", band=(0, 199))
    manifest = {
        "format": 1,
        "experts": [
            {"name": "high", "band": [200, 999], "path": "high", "handover": 0.8},
            {"name": "low", "band": [0, 199], "path": str(refiner), "handover": 1.0},
        ],
        "parameterisation": {"prediction_type": "v_prediction"},
    }
    (root / "moe.json").write_text(json.dumps(manifest))
    return root


def test_moe_exports_every_expert_and_the_handovers(moe_root, tmp_path, capsys):
    out = tmp_path / "files"
    code, _, err = _export(capsys, "--moe", moe_root, "--out", out, "--dtype", "bf16")
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == [
        "handovers.json",
        "high.safetensors",
        "low.safetensors",
    ]
    handovers = json.loads((out / "handovers.json").read_text())
    high, low = handovers["experts"]
    assert (high["name"], high["file"], high["band"]) == ("high", "high.safetensors", [200, 999])
    assert (high["denoising_start"], high["denoising_end"], high["handover"]) == (0.0, 0.8, 0.8)
    assert (low["denoising_start"], low["markers"]) == (0.8, ["v_pred", "ztsnr"])
    assert handovers["parameterisation"] == {"prediction_type": "v_prediction"}
    assert "v_pred" in load_file(out / "low.safetensors")
    assert "v_pred" not in load_file(out / "high.safetensors")
    # a second run refuses (files exist) before writing anything
    err = _refused(capsys, out / "high.safetensors", "--moe", moe_root, "--out", out)
    assert "--overwrite" in err


def test_moe_checks_every_expert_before_writing(moe_root, capsys):
    (moe_root / "high" / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    code, _, err = _export(capsys, "--moe", moe_root)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "unet" in err
    assert not (moe_root / "export").exists()  # the default --out, not even created
