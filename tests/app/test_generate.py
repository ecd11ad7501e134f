"""`expertune generate` end to end on tiny expert folders: which path runs, that the router
and the chain give the same image where they must, and the refusals that come before any
model loads."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from expertune.cli import EXIT_USER_ERROR, main
from pipeline.router_support import make_experts, write_manifest

SMALL = ["--steps", "4", "--height", "64", "--width", "64", "--device", "cpu"]


@pytest.fixture(scope="module")
def root(tiny_model_dir, tmp_path_factory):
    """An OUTPUT_ROOT with three experts (high, mid, low) and its moe.json."""
    root = tmp_path_factory.mktemp("moe")
    experts = make_experts(tiny_model_dir, root, (0, 300, 650, 1000))
    write_manifest(root, experts)
    return root


@pytest.fixture(scope="module")
def pair(tiny_model_dir, tmp_path_factory):
    """high [350, 999] and low [0, 349]."""
    return make_experts(tiny_model_dir, tmp_path_factory.mktemp("pair"), (0, 350, 1000))


ZERO_SNR = {
    "rescale_betas_zero_snr": True,
    "timestep_spacing": "trailing",
    "prediction_type": "v_prediction",
}


@pytest.fixture(scope="module")
def zero_snr(tiny_model_dir, tmp_path_factory):
    """An OUTPUT_ROOT of two zero-terminal-SNR v-prediction experts split at 500."""
    root = tmp_path_factory.mktemp("zero-snr")
    write_manifest(
        root, make_experts(tiny_model_dir, root, (0, 500, 1000), param=ZERO_SNR), ZERO_SNR
    )
    return root


@pytest.fixture
def no_loading(monkeypatch):
    """Any weight load fails the test: the error must come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the error was found")

    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

    for cls in (StableDiffusionXLPipeline, UNet2DConditionModel):
        monkeypatch.setattr(cls, "from_pretrained", refuse)


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image, dtype=np.int16)


def test_moe_and_shuffled_experts_run_the_router_and_agree(root, tmp_path, capsys):
    a, b = tmp_path / "moe.png", tmp_path / "experts.png"
    assert (
        main(
            [
                "generate",
                "--moe",
                str(root),
                "--prompt",
                "a red circle",
                *SMALL,
                "--guidance-scale",
                "6,5,4",
                "--out",
                str(a),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "path: router (expert0 [650, 999] -> expert1 [300, 649] -> expert2 [0, 299])" in out
    shuffled = [str(root / n) for n in ("expert2", "expert0", "expert1")]
    argv = [
        "generate",
        *[arg for e in shuffled for arg in ("--expert", e)],
        "--prompt",
        "a red circle",
    ]
    assert main([*argv, *SMALL, "--guidance-scale", "6,5,4", "--out", str(b)]) == 0
    assert np.array_equal(_pixels(a), _pixels(b))
    c = tmp_path / "other-guidance.png"
    assert main([*argv, *SMALL, "--guidance-scale", "6,5,9", "--out", str(c)]) == 0
    assert not np.array_equal(_pixels(a), _pixels(c))  # the list reaches the last expert


def test_pair_router_equals_chain_with_per_stage_guidance(pair, tmp_path, capsys):
    high, low = pair
    argv = [
        "generate",
        "--base",
        str(high),
        "--refiner",
        str(low),
        "--prompt",
        "a square",
        *SMALL,
        "--scheduler",
        "euler",
        "--guidance-scale",
        "5",
        "--refiner-guidance-scale",
        "8",
        "--guidance-rescale",
        "0,0.7",
    ]
    assert main([*argv, "--out", str(tmp_path / "router.png")]) == 0
    assert "path: router" in capsys.readouterr().out
    assert main([*argv, "--chain", "--out", str(tmp_path / "chain.png")]) == 0
    assert "path: chain (--chain)" in capsys.readouterr().out
    diff = np.abs(_pixels(tmp_path / "router.png") - _pixels(tmp_path / "chain.png")).max()
    print(f"generate --base/--refiner, euler: router vs chain max pixel diff {diff}")
    assert diff == 0


def test_a_refiner_family_expert_falls_back_to_the_chain(pair, tmp_path, capsys):
    from expertune.models.tiny import build_tiny_sdxl_refiner

    high, low = pair
    refiner = build_tiny_sdxl_refiner(tmp_path / "refiner", seed=0)
    shutil.copy(low / "expertune.json", refiner / "expertune.json")
    record = json.loads((refiner / "expertune.json").read_text())
    record["model_family"] = "sdxl-refiner"
    record["component_fingerprints"]["text_encoder"] = None
    (refiner / "expertune.json").write_text(json.dumps(record))
    out = tmp_path / "x.png"
    argv = ["generate", "--expert", str(high), "--expert", str(refiner), "--prompt", "x"]
    assert main([*argv, *SMALL, "--out", str(out)]) == 0
    assert "path: chain (refiner is an sdxl-refiner model" in capsys.readouterr().out
    assert Image.open(out).size == (64, 64)


def test_single_model(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "one.jpg"
    assert (
        main(
            ["generate", "--model", str(tiny_model_dir), "--prompt", "x", *SMALL, "--out", str(out)]
        )
        == 0
    )
    assert "path: single model" in capsys.readouterr().out
    assert Image.open(out).format == "JPEG"


def test_handover_outside_the_refiner_band_warns_with_both_numbers(pair, tmp_path, caplog):
    high, low = pair
    argv = ["generate", "--base", str(high), "--refiner", str(low), "--prompt", "x", *SMALL]
    assert main([*argv, "--base-model-power", "0.5", "--out", str(tmp_path / "x.png")]) == 0
    warning = next(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "0.5" in warning and "499" in warning and "[0, 349]" in warning


def _refused(argv, capsys) -> str:
    assert main(argv) == EXIT_USER_ERROR
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("expertune: "), lines
    return lines[0]


def test_swapped_base_and_refiner(pair, tmp_path, capsys, no_loading):
    high, low = pair
    argv = ["generate", "--base", str(low), "--refiner", str(high), "--prompt", "x"]
    line = _refused([*argv, "--out", str(tmp_path / "x.png")], capsys)
    assert "swapped" in line and "[0, 349]" in line and "[350, 999]" in line


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--scheduler", "heun"], ["--scheduler heun", "zero-terminal-SNR", "euler"]),
        (["--scheduler", "kdpm2"], ["--scheduler kdpm2", "zero-terminal-SNR"]),
        (["--guidance-scale", "5,6,7"], ["3 values for 2 experts"]),
        (["--offload-idle"], ["--offload-idle", "accelerator"]),
        (["--model", "x"], ["one way", "--moe, --model"]),
        (
            ["--guidance-scale", "5", "--refiner-prompt", "y"],
            ["--refiner-prompt applies to --base/--refiner"],
        ),
    ],
)
def test_refused_before_loading(zero_snr, tmp_path, capsys, no_loading, flags, words):
    argv = ["generate", "--moe", str(zero_snr), "--prompt", "x", "--out", str(tmp_path / "x.png")]
    line = _refused([*argv, "--device", "cpu", *flags], capsys)
    for word in words:
        assert word in line, (word, line)
    assert not (tmp_path / "x.png").exists()


def test_zero_snr_experts_run_with_a_scheduler_that_honours_them(zero_snr, tmp_path):
    from expertune.pipeline.routed import load_routed_pipeline

    pipe = load_routed_pipeline(zero_snr, scheduler="euler")
    assert pipe.scheduler.config.rescale_betas_zero_snr
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert (
        main(
            [
                "generate",
                "--moe",
                str(zero_snr),
                "--prompt",
                "x",
                *SMALL,
                "--scheduler",
                "euler",
                "--out",
                str(tmp_path / "x.png"),
            ]
        )
        == 0
    )
