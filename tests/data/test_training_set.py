"""A multi-dataset config end to end on the tiny model: buckets, time ids, cache folders,
held-out eval images, the refiner's layout, and batches that never mix buckets."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from expertune.config.schema import TrainConfig
from expertune.data.demo_images import make_demo_images
from expertune.data.encode import encode_latents
from expertune.data.images import RESAMPLE, load_image
from expertune.data.training_set import prepare_data
from expertune.errors import DataError
from expertune.train.batches import BatchSource

CPU = SimpleNamespace(process_index=0, num_processes=1, device=torch.device("cpu"))


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """photos/ (3 aspect ratios, .txt captions), subject/, evalset/ (one photo copied in)."""
    root = tmp_path_factory.mktemp("datasets")
    photos = make_demo_images(root / "photos", n=6, size=96)
    make_demo_images(root / "subject", n=2, size=80, seed=1)
    make_demo_images(root / "evalset", n=2, size=96, seed=2)
    for suffix in (".png", ".txt"):
        shutil.copy(photos[0].with_suffix(suffix), root / "evalset" / f"copy{suffix}")
    entries = [
        {
            "id": "photos",
            "instance_data_dir": str(root / "photos"),
            "caption_strategy": "textfile",
            "resolution": 64,
            "crop": False,  # aspect buckets: 64x64, 80x64 and 64x80
            "disable_validation": True,
            "cache_dir_vae": str(root / "cache/vae-photos"),
        },
        {
            "id": "subject",
            "instance_data_dir": str(root / "subject"),
            "caption_strategy": "instanceprompt",
            "instance_prompt": "a photo of sks",
            "resolution": 64,
            "crop": True,
            "crop_style": "corner",
            "repeats": 2,
            "probability": 0.5,
            "cache_dir_vae": str(root / "cache/vae-subject"),
        },
        {
            "id": "held-out",
            "dataset_type": "eval",
            "instance_data_dir": str(root / "evalset"),
            "resolution": 64,
            "crop": True,
            "crop_style": "center",
            "cache_dir_vae": str(root / "cache/vae-eval"),
        },
        {"id": "old", "instance_data_dir": str(root / "nowhere"), "disabled": True},
        {
            "id": "text",
            "dataset_type": "text_embeds",
            "default": True,
            "cache_dir": str(root / "cache/text"),
        },
    ]
    (root / "multidatabackend.json").write_text(json.dumps(entries, indent=2))
    return root


def config(tiny_model_dir, tree, **changes) -> TrainConfig:
    settings = dict(
        pretrained_model_name_or_path=str(tiny_model_dir),
        data_backend_config=str(tree / "multidatabackend.json"),
        cache_dir=str(tree / "cache/default"),
        resolution=64,
        aspect_bucket_alignment=16,
        seed=1,
    )
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def prepared(tiny_model_dir, tiny_components, tree):
    return prepare_data(
        config(tiny_model_dir, tree), tiny_components, global_batch=2, progress=False
    )


def crop_from_time_ids(image: Image.Image, ids) -> torch.Tensor:
    """The pixels the time ids describe: cover-resize to the target, crop at (top, left)."""
    oh, ow, top, left, th, tw = (int(v) for v in ids)
    assert (oh, ow) == (image.height, image.width)
    scale = max(th / oh, tw / ow)
    rh, rw = max(th, int(oh * scale)), max(tw, int(ow * scale))
    crop = image.resize((rw, rh), RESAMPLE).crop((left, top, left + tw, top + th))
    pixels = torch.tensor(list(crop.getdata()), dtype=torch.float32).reshape(th, tw, 3)
    return (pixels / 127.5 - 1).permute(2, 0, 1)


def test_buckets_captions_and_held_out_images(prepared):
    items = prepared.training.items
    assert sorted({i.bucket for i in items if i.dataset == "photos"}) == [
        (64, 64),
        (64, 80),
        (80, 64),
    ]
    assert {i.bucket for i in items if i.dataset == "subject"} == {(64, 64)}
    assert [i.dataset for i in items].count("photos") == 5  # one is also in the eval set
    assert prepared.report.held_out == 1
    assert {i.caption for i in items if i.dataset == "subject"} == {"a photo of sks"}
    assert len(prepared.eval_dataset) == 3 and {i.dataset for i in prepared.eval_dataset.items} == {
        "held-out"
    }
    assert {i.dataset for i in prepared.validation_dataset.items} == {"subject"}
    assert len(prepared.training.groups) == 4
    assert "7 training images in 3 buckets" in prepared.training.describe()


def test_time_ids_match_the_actual_crop(prepared, tiny_components):
    dataset = prepared.training
    for index, item in enumerate(dataset.items):
        sample = dataset[index]
        h, w = item.bucket
        assert sample["latents"].shape == (4, h // 8, w // 8)
        assert sample["time_ids"].tolist() == list(item.time_ids)
        pixels = crop_from_time_ids(load_image(item.path), item.time_ids)
        expected = encode_latents(tiny_components.vae, pixels[None])[0]
        torch.testing.assert_close(sample["latents"], expected, atol=1e-4, rtol=1e-4)
    corner = [i.time_ids for i in dataset.items if i.dataset == "subject"]
    assert all(ids[2:4] == (0.0, 0.0) for ids in corner)


def test_each_dataset_uses_its_cache_folders(prepared, tree):
    def entries(folder):
        return {p.name for p in (tree / "cache" / folder).rglob("*.safetensors")}

    items = prepared.training.items + prepared.eval_dataset.items
    for folder, dataset in (
        ("vae-photos", "photos"),
        ("vae-subject", "subject"),
        ("vae-eval", "held-out"),
    ):
        assert entries(folder) == {
            f"{i.latent_key}.safetensors" for i in items if i.dataset == dataset
        }
    assert entries("text") == {f"{i.text_key}.safetensors" for i in items}
    assert not (tree / "cache/default").exists()


def test_a_second_job_encodes_nothing(prepared, tiny_model_dir, tiny_components, tree):
    again = prepare_data(
        config(tiny_model_dir, tree), tiny_components, global_batch=2, progress=False
    )
    assert again.stats.encoder_forward_passes == 0 and again.stats.misses == 0
    assert again.training.items == prepared.training.items
    assert again.training.fingerprint == prepared.training.fingerprint
    other = prepare_data(
        config(tiny_model_dir, tree), tiny_components, global_batch=4, progress=False
    )
    assert other.training.fingerprint != prepared.training.fingerprint


def test_batches_never_mix_buckets_and_count_repeats(prepared):
    source = BatchSource(prepared.training, seed=1, batch_size=2, accelerator=CPU)
    batches = [source.batch(2 * b) for b in range(source.plan.batches_per_epoch)]
    assert all(batch["latents"].shape[0] == 2 for batch in batches)  # stacking worked
    # photos: 2 square, 2 portrait, 1 landscape -> 1 + 1 + 1 batches; subject: 2 x 3 -> 3
    assert source.plan.batches_per_epoch == 6 and len(prepared.training) == 12
    epoch = [i for b in range(6) for i in source.plan.batch(b)]
    subject = [i for i, item in enumerate(prepared.training.items) if item.dataset == "subject"]
    assert sorted(epoch.count(i) for i in subject) == [3, 3]


def test_the_refiner_layout_gets_its_own_text_entries_and_time_ids(
    prepared, tiny_model_dir, tiny_components, tree
):
    refiner = dataclasses.replace(
        tiny_components, text_encoder=None, tokenizer=None, family="sdxl-refiner"
    )
    cfg = config(tiny_model_dir, tree)
    data = prepare_data(cfg, refiner, global_batch=2, progress=False)
    base_text = {i.text_key for i in prepared.training.items}
    assert not base_text & {i.text_key for i in data.training.items}  # never shared
    assert data.stats.latents_encoded == 0  # same VAE and crops: latents are shared
    sample = data.training[0]
    assert sample["time_ids"].shape == (5,) and sample["time_ids"][-1] == 6.0  # aesthetic score
    assert sample["prompt_embeds"].shape[-1] == 32  # text_encoder_2 only
    from diffusers import UNet2DConditionModel

    unet_config = {**tiny_components.unet.config}
    unet_config.update(cross_attention_dim=32, projection_class_embeddings_input_dim=5 * 8 + 32)
    unet = UNet2DConditionModel.from_config(unet_config)
    batch = BatchSource(data.training, seed=1, batch_size=2, accelerator=CPU).batch(0)
    out = unet(
        batch["latents"],
        torch.tensor([500, 10]),
        encoder_hidden_states=batch["prompt_embeds"],
        added_cond_kwargs={
            "text_embeds": batch["pooled_prompt_embeds"],
            "time_ids": batch["time_ids"],
        },
    ).sample
    assert out.shape == batch["latents"].shape


def test_hold_out_moves_training_images_to_the_eval_set(
    tmp_path, tiny_model_dir, tiny_components, tree
):
    cfg = TrainConfig(
        pretrained_model_name_or_path=str(tiny_model_dir),
        instance_data_dir=str(tree / "photos"),
        cache_dir=str(tmp_path / "cache"),
        resolution=64,
    )
    every = prepare_data(cfg, tiny_components, global_batch=1, progress=False).training.items
    data = prepare_data(
        cfg, tiny_components, global_batch=1, progress=False, hold_out=lambda items: [0, 2]
    )
    assert data.eval_dataset.items == [every[0], every[2]]
    assert data.training.items == [every[1], *every[3:]]
    assert data.stats.encoder_forward_passes == 0  # the same entries, held out or not


def test_a_dataset_left_empty_is_an_error_before_training(
    tmp_path, tiny_model_dir, tiny_components
):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("not an image")
    cfg = TrainConfig(
        pretrained_model_name_or_path=str(tiny_model_dir),
        instance_data_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        resolution=64,
    )
    with pytest.raises(
        DataError, match=r"'instance_data_dir' .* no usable images \(2 files skipped"
    ):
        prepare_data(cfg, tiny_components, global_batch=1, progress=False)


def test_long_captions_and_batches_of_copies_are_told(tiny_model_dir, tiny_components, tmp_path):
    folder = tmp_path / "one"
    (image,) = make_demo_images(folder, n=1, size=64)
    image.with_suffix(".txt").write_text("a red circle " * 40)  # 120 words, over 77 tokens
    cfg = TrainConfig(
        pretrained_model_name_or_path=str(tiny_model_dir),
        instance_data_dir=str(folder),
        cache_dir=str(tmp_path / "cache"),
        resolution=64,
    )
    data = prepare_data(cfg, tiny_components, global_batch=8, progress=False)
    ((path, tokens, kept),) = data.report.long_captions
    tokens_seen = len(tiny_components.tokenizer(image.with_suffix(".txt").read_text()).input_ids)
    assert path == image and kept == 77 and tokens == tokens_seen > 77
    assert data.report.small_groups == [("instance_data_dir", (64, 64), 1, 8)]
    summary = data.report.summary()
    assert f"1 caption longer than the text encoder's 77 tokens cut to 77 (e.g. {image}" in summary
    assert f"{tokens - 77} cut" in summary
    assert (
        "has 1 sample per epoch for a batch of 8: each batch repeats them (8 copies of 1)"
        in summary
    )
