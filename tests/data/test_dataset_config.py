"""The dataloader JSON: SimpleTuner's keys and defaults, one clear line for each mistake."""

from __future__ import annotations

import json

import pytest

from expertune.data.dataset_config import AspectWeight, read_dataloader_config, single_folder
from expertune.errors import ConfigError


def write(tmp_path, entries, name="multidatabackend.json"):
    path = tmp_path / name
    path.write_text(json.dumps(entries, indent=2))
    return path


FULL = [
    {
        "id": "photos",
        "type": "local",
        "dataset_type": "image",
        "instance_data_dir": "data/photos",
        "caption_strategy": "textfile",
        "resolution": 1.0,
        "resolution_type": "area",
        "minimum_image_size": 0.5,
        "crop": True,
        "crop_style": "random",
        "crop_aspect": "random",
        "crop_aspect_buckets": [{"aspect": 1.0, "weight": 2}, 0.75, 1.33],
        "repeats": 2,
        "probability": 0.5,
        "disable_validation": True,
        "cache_dir_vae": "cache/vae/photos",
        "text_embeds": "alt-text",
        # SimpleTuner cache/storage knobs that change nothing here
        "skip_file_discovery": "",
        "metadata_backend": "discovery",
        "vae_cache_clear_each_epoch": False,
        "maximum_image_size": 2.0,
        "target_downsample_size": 1.5,
        # SimpleTuner features we lack, at their harmless defaults
        "is_regularisation_data": False,
        "start_epoch": 1,
    },
    {
        "id": "subject",
        "instance_data_dir": "data/subject",
        "caption_strategy": "instanceprompt",
        "instance_prompt": "a photo of sks",
    },
    {"id": "held-out", "dataset_type": "eval", "instance_data_dir": "data/eval"},
    {"id": "gone", "instance_data_dir": "nowhere", "disable": True},
    {"id": "text", "dataset_type": "text_embeds", "default": True, "cache_dir": "cache/text"},
    {"id": "alt-text", "dataset_type": "text_embeds", "cache_dir": "cache/alt"},
]


def test_a_full_config_round_trips(tmp_path):
    config = read_dataloader_config(write(tmp_path, FULL))
    assert [s.id for s in config.training] == ["photos", "subject"]
    assert [s.id for s in config.evaluation] == ["held-out"]
    photos, subject = config.training
    assert photos.crop_aspect_buckets == (AspectWeight(aspect=1.0, weight=2), 0.75, 1.33)
    assert (photos.repeats, photos.probability, photos.disable_validation) == (2, 0.5, True)
    assert config.latent_cache_dir(photos, "cache") == "cache/vae/photos"
    assert config.text_cache_dir(photos, "cache") == "cache/alt"
    assert config.text_cache_dir(subject, "cache") == "cache/text"  # the default one
    assert config.latent_cache_dir(subject, "cache") == "cache"  # CACHE_DIR
    # SimpleTuner's defaults
    assert (subject.crop, subject.crop_style, subject.crop_aspect) == (False, "random", "square")
    assert (subject.resolution_type, subject.repeats, subject.probability) == ("pixel", 0, 1.0)
    assert single_folder("x", 512).training[0].caption_strategy == "textfile"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"crop_stlye": "center"},
            r"unknown key 'crop_stlye' \(line \d+\).*did you mean 'crop_style'",
        ),
        ({"cache_dir_vea": "x"}, "did you mean 'cache_dir_vae'"),
        ({"crop_aspect": "wide"}, "crop_aspect"),
        ({"repeats": -1}, "repeats"),
        ({"probability": 0}, "probability"),
        ({"caption_strategy": "instanceprompt"}, "instance_prompt is needed"),
        ({"type": "aws"}, "type"),
        ({"dataset_type": "video"}, "dataset_type 'video' is not supported"),
        ({"parquet": {"path": "x.parquet"}}, "'parquet'.*does not support"),
        ({"text_embeds": "missing"}, "names text_embeds 'missing'"),
        ({"resolution_type": "megapixel"}, "resolution_type"),
    ],
)
def test_mistakes_are_one_line_naming_the_dataset_and_key(tmp_path, change, message):
    entries = [{"id": "photos", "instance_data_dir": "data", **change}]
    with pytest.raises(ConfigError, match=message) as err:
        read_dataloader_config(write(tmp_path, entries))
    assert "'photos'" in str(err.value) and "\n" not in str(err.value)


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"id": "a",\n   "instance_data_dir": "x"\n  }\n  {"id": "b"}\n]\n')
    with pytest.raises(ConfigError, match=r"bad\.json is not valid JSON \(line 5"):
        read_dataloader_config(path)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([{"id": "a", "instance_data_dir": "x"}, {"id": "a", "instance_data_dir": "y"}], "twice"),
        ([{"id": "a", "instance_data_dir": "x", "disabled": True}], "no enabled image dataset"),
        ([{"id": "a"}], "instance_data_dir is required"),
        ({"not": "a list"}, "unknown key 'not'"),
        ("text", "must be a JSON list"),
    ],
)
def test_config_level_mistakes(tmp_path, entries, message):
    with pytest.raises(ConfigError, match=message):
        read_dataloader_config(write(tmp_path, entries))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.json does not exist"):
        read_dataloader_config(tmp_path / "nope.json")
