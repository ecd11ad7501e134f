"""The SDXL-refiner family end to end: an SDXL base expert and an SDXL-refiner expert
(text_encoder_2 only, aesthetic score in the time ids) trained on one cache, saved as a
plain diffusers refiner, and chained as the classic SDXL base + refiner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from expertune.cli import EXIT_USER_ERROR, main
from expertune.data.cache import Cache
from expertune.data.keys import LATENTS, TEXT
from expertune.models.family import SDXL_REFINER
from expertune.pipeline.experts import read_expert
from expertune.pipeline.sharing import shared_parts

IMAGES = 6
UNET = "unet/diffusion_pytorch_model.safetensors"


def _train(work: Path, model: str, out: str, *flags: str) -> list[torch.Tensor]:
    """Train 2 steps; return the time ids of every micro-batch the loop trained on."""
    from expertune.train.loop import Trainer

    seen: list[torch.Tensor] = []
    original = Trainer._micro_step

    def spy(self, batch):
        seen.append(batch["time_ids"].clone())
        return original(self, batch)

    argv = [
        "train",
        f"--pretrained_model_name_or_path={work / model}",
        f"--output_dir={work / out}",
        f"--instance_data_dir={work / 'data'}",
        f"--cache_dir={work / 'cache'}",
        "--resolution=64",
        "--train_batch_size=2",
        "--max_train_steps=2",
        "--checkpointing_steps=0",
        "--learning_rate=1e-4",
        "--report_to=none",
        "--refiner_training",
        "--refiner_training_strength=0.2",
        *flags,
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "_micro_step", spy)
        assert main(argv) == 0
    return seen


def _keys(work: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {LATENTS: set(), TEXT: set()}
    for entry in Cache(work / "cache").entries():
        found[entry.kind].add(entry.key)
    return found


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> dict:
    """Tiny base and refiner (same VAE), stage one on the base, then stage two on the
    refiner with the same captions and cache; what each left in the cache and trained on."""
    from expertune.data.demo_images import make_demo_images
    from expertune.data.images import load_image
    from expertune.models.tiny import build_tiny_sdxl, build_tiny_sdxl_refiner

    work = tmp_path_factory.mktemp("refiner-family")
    calibration = [load_image(p) for p in make_demo_images(work / "data", n=IMAGES)]
    build_tiny_sdxl(work / "base", calibration_images=calibration)
    build_tiny_sdxl_refiner(work / "refiner", calibration_images=calibration)
    base_ids = _train(work, "base", "stage1", "--refiner_training_invert_schedule")
    after_base = _keys(work)
    refiner_ids = _train(work, "refiner", "stage2", "--model_family=sdxl-refiner")
    return {
        "dir": work,
        "base_ids": base_ids,
        "refiner_ids": refiner_ids,
        "after_base": after_base,
        "after_refiner": _keys(work),
    }


@pytest.mark.slow
def test_saved_refiner_loads_with_plain_diffusers(work):
    from diffusers import StableDiffusionXLImg2ImgPipeline

    out = work["dir"] / "stage2"
    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLImg2ImgPipeline"
    assert index["requires_aesthetics_score"] is True
    assert index["force_zeros_for_empty_prompt"] is False  # the source's own setting, kept
    assert index["text_encoder"] == [None, None] and index["tokenizer"] == [None, None]
    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(out, add_watermarker=False)
    assert pipe.text_encoder is None and pipe.text_encoder_2 is not None
    trained, source = load_file(out / UNET), load_file(work["dir"] / "refiner" / UNET)
    assert any(not torch.equal(trained[k], source[k]) for k in source)
    record = json.loads((out / "expertune.json").read_text())
    assert record["model_family"] == "sdxl-refiner" and record["band"] == [0, 199]
    parts = record["component_fingerprints"]
    assert parts["text_encoder"] is None and parts["vae"] == record["encoder_fingerprints"]["vae"]


@pytest.mark.slow
def test_training_time_ids_carry_the_aesthetic_score(work):
    refiner, base = work["refiner_ids"], work["base_ids"]
    assert refiner and all(ids.shape == (2, SDXL_REFINER.num_time_ids) for ids in refiner)
    assert all(torch.all(ids[:, -1] == SDXL_REFINER.aesthetic_score) for ids in refiner)
    assert all(ids.shape == (2, 6) for ids in base)
    assert all(torch.all(ids[:, 4:] == 64) for ids in base)  # target size where the score sits


@pytest.mark.slow
def test_text_entries_are_apart_and_latents_shared(work):
    before, after = work["after_base"], work["after_refiner"]
    assert len(before[LATENTS]) == len(before[TEXT]) == IMAGES
    assert after[LATENTS] == before[LATENTS]  # same VAE: no latent recomputed
    assert len(after[TEXT]) == 2 * IMAGES and before[TEXT] < after[TEXT]
    summary = json.loads((work["dir"] / "stage2" / "run_summary.json").read_text())
    assert summary["cache_hits"] == IMAGES and summary["cache_misses"] == IMAGES


@pytest.mark.slow
def test_base_and_refiner_chain_shares_identical_parts_and_generates(work, tmp_path):
    from expertune.pipeline.chain import ExpertChain

    stage1, stage2 = work["dir"] / "stage1", work["dir"] / "stage2"
    chain = ExpertChain(stage1, stage2)
    assert chain.refiner.vae is chain.base.vae
    assert chain.refiner.text_encoder_2 is chain.base.text_encoder_2
    assert chain.refiner.tokenizer_2 is chain.base.tokenizer_2
    assert chain.refiner.text_encoder is None
    png = tmp_path / "chain.png"
    argv = ["generate", "--base", str(stage1), "--refiner", str(stage2), "--prompt", "a circle"]
    assert main([*argv, "--steps", "6", "--out", str(png)]) == 0
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (64, 64)


@pytest.mark.slow
def test_refiner_as_base_is_a_user_error(work, capsys):
    stage1, stage2 = work["dir"] / "stage1", work["dir"] / "stage2"
    argv = ["generate", "--base", str(stage2), "--refiner", str(stage1), "--prompt", "x"]
    assert main(argv) == EXIT_USER_ERROR
    assert "sdxl-refiner model" in capsys.readouterr().err


def _expert(folder: Path, index: dict, parts: dict | None, legacy: dict | None = None):
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(index))
    record = {"encoder_fingerprints": legacy or {}}
    if parts is not None:
        record["component_fingerprints"] = parts
    (folder / "expertune.json").write_text(json.dumps(record))
    return read_expert(folder, "--x")


LIB, NULL = ["diffusers", "X"], [None, None]
BASE_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    **{c: LIB for c in ("vae", "unet", "scheduler", "text_encoder", "text_encoder_2")},
    **{c: LIB for c in ("tokenizer", "tokenizer_2")},
}
REFINER_INDEX = {**BASE_INDEX, "text_encoder": NULL, "tokenizer": NULL}
REFINER_INDEX |= {"_class_name": "StableDiffusionXLImg2ImgPipeline"}
REFINER_INDEX |= {"requires_aesthetics_score": True}


def test_sharing_takes_each_part_whose_fingerprint_matches(tmp_path):
    parts = {"vae": "v", "text_encoder": "t1", "text_encoder_2": "t2", "tokenizer": "k1"}
    parts["tokenizer_2"] = "k2"
    base = _expert(tmp_path / "b", BASE_INDEX, parts)
    same = {**parts, "text_encoder": None, "tokenizer": None}
    refiner = _expert(tmp_path / "r", REFINER_INDEX, same)
    assert shared_parts(base, refiner) == ("vae", "text_encoder_2", "tokenizer_2")
    other_vae = _expert(tmp_path / "o", REFINER_INDEX, {**same, "vae": "other"})
    assert shared_parts(base, other_vae) == ("text_encoder_2", "tokenizer_2")
    sibling = _expert(tmp_path / "s", BASE_INDEX, parts)
    assert shared_parts(base, sibling) == (
        "vae",
        "text_encoder",
        "text_encoder_2",
        "tokenizer",
        "tokenizer_2",
    )


def test_sharing_without_part_fingerprints_needs_equal_encoder_records(tmp_path):
    old = {"vae": "v", "text": "t"}
    base = _expert(tmp_path / "b", BASE_INDEX, None, old)
    assert len(shared_parts(base, _expert(tmp_path / "s", BASE_INDEX, None, old))) == 5
    changed = _expert(tmp_path / "c", BASE_INDEX, None, {**old, "text": "u"})
    assert shared_parts(base, changed) == ()
