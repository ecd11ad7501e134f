"""Families as data, and telling them apart from a model_index.json."""

from __future__ import annotations

import pytest

from expertune.errors import ConfigError, ModelReferenceError
from expertune.models.family import SDXL, SDXL_REFINER, detect_family, get_family

LIB = ["diffusers", "X"]
NULL = [None, None]
SDXL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline",
    **{c: LIB for c in SDXL.components},
    "image_encoder": NULL,
}
REFINER_INDEX = {
    "_class_name": "StableDiffusionXLImg2ImgPipeline",
    **{c: LIB for c in SDXL_REFINER.components},
    "text_encoder": NULL,
    "tokenizer": NULL,
    "requires_aesthetics_score": True,
}


def test_layouts():
    assert SDXL.num_time_ids == 6 and SDXL_REFINER.num_time_ids == 5
    assert [n for n, _ in SDXL.time_ids][-1] == "target_size"
    assert [n for n, _ in SDXL_REFINER.time_ids][-1] == "aesthetic_score"
    assert SDXL.pooled_from == SDXL_REFINER.pooled_from == "text_encoder_2"
    assert SDXL_REFINER.weight_folders == ("unet", "vae", "text_encoder_2")
    assert get_family("sdxl-refiner") is SDXL_REFINER


def test_unknown_family_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="sdxl, sdxl-refiner"):
        get_family("flux")


def test_detects_base_and_refiner():
    assert detect_family(SDXL_INDEX) == "sdxl"
    assert detect_family(REFINER_INDEX) == "sdxl-refiner"
    ssd_1b_as_img2img = {**SDXL_INDEX, "_class_name": "StableDiffusionXLImg2ImgPipeline"}
    assert detect_family(ssd_1b_as_img2img) == "sdxl"


@pytest.mark.parametrize("found", ["StableDiffusionPipeline", "FluxPipeline"])
def test_other_pipelines_are_named(found):
    with pytest.raises(ModelReferenceError) as err:
        detect_family({**SDXL_INDEX, "_class_name": found}, where="x/model_index.json")
    message = str(err.value)
    assert "\n" not in message
    assert (
        found in message and "StableDiffusionXLPipeline" in message and "x/model_index" in message
    )


def test_missing_components_are_named():
    index = {k: v for k, v in SDXL_INDEX.items() if k != "vae"}
    with pytest.raises(ModelReferenceError, match="without vae"):
        detect_family(index)
