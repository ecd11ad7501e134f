"""Encoding matches diffusers' SDXL conditioning; a warm cache runs no encoder at all."""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import replace

import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from transformers import CLIPTokenizer

from expertune.data.cache import Cache, Caches
from expertune.data.cached_dataset import CachedDataset
from expertune.data.demo_images import make_demo_images
from expertune.data.encode import (
    Encoders,
    PlannedImage,
    build_cache,
    encode_latents,
    encode_prompts,
)
from expertune.data.images import load_image, plan_crop, prepare
from expertune.data.keys import (
    latent_key,
    text_encoders_fingerprint,
    text_key,
    tokenizer_fingerprint,
)
from expertune.data.local_folder import scan_folder

CAPTIONS = ["a red circle on a blue background", "stripes " * 60]  # the second is truncated


def pipeline_encode(encoders, captions, refiner=False):
    parts = encoders.as_kwargs()
    if refiner:
        parts.update(text_encoder=None, tokenizer=None)
    pipe = StableDiffusionXLPipeline(**parts, unet=None, scheduler=None, add_watermarker=False)
    embeds, _, pooled, _ = pipe.encode_prompt(
        captions, device=torch.device("cpu"), do_classifier_free_guidance=False
    )
    return embeds, pooled


def test_encode_prompts_equals_the_sdxl_pipeline(encoders):
    embeds, pooled = encode_prompts(
        encoders.text_encoder,
        encoders.text_encoder_2,
        encoders.tokenizer,
        encoders.tokenizer_2,
        CAPTIONS,
    )
    expected_embeds, expected_pooled = pipeline_encode(encoders, CAPTIONS)
    assert embeds.shape == (2, 77, 32 + 48) and pooled.shape == (2, 48)
    torch.testing.assert_close(embeds, expected_embeds, rtol=0, atol=0)
    torch.testing.assert_close(pooled, expected_pooled, rtol=0, atol=0)


def test_refiner_layout_uses_only_the_second_encoder(encoders):
    embeds, pooled = encode_prompts(
        None, encoders.text_encoder_2, None, encoders.tokenizer_2, CAPTIONS
    )
    expected_embeds, expected_pooled = pipeline_encode(encoders, CAPTIONS, refiner=True)
    assert embeds.shape == (2, 77, 48)
    torch.testing.assert_close(embeds, expected_embeds, rtol=0, atol=0)
    torch.testing.assert_close(pooled, expected_pooled, rtol=0, atol=0)


def test_latents_are_the_shifted_scaled_posterior_mean(make_vae):
    pixels = torch.rand(2, 3, 64, 48) * 2 - 1
    plain = make_vae(scaling_factor=1.0)
    shifted = make_vae(scaling_factor=0.5, shift_factor=0.1)
    z = encode_latents(plain, pixels)
    assert z.shape == (2, 4, 8, 6)
    torch.testing.assert_close(z, plain.encode(pixels).latent_dist.mode().detach())
    torch.testing.assert_close(encode_latents(plain, pixels), z, rtol=0, atol=0)
    torch.testing.assert_close(encode_latents(shifted, pixels), (z - 0.1) * 0.5)


def test_keys_cover_fingerprint_preprocessing_and_input():
    plan = plan_crop(96, 128, 64)
    base = latent_key("vae-a", "digest", plan)
    assert base == latent_key("vae-a", "digest", plan_crop(96, 128, (64, 64)))
    others = [
        latent_key("vae-b", "digest", plan),
        latent_key("vae-a", "other", plan),
        latent_key("vae-a", "digest", plan_crop(96, 128, 128)),
        latent_key("vae-a", "digest", plan_crop(96, 128, (64, 96))),
        latent_key("vae-a", "digest", plan_crop(96, 128, 64, crop="corner")),
    ]
    assert base not in others and len(set(others)) == 5
    assert text_key("te", "a cat") != text_key("te2", "a cat") != text_key("te", "a dog")


class PassCounter:
    """Counts real forward calls of the encoders' modules (nothing is replaced)."""

    def __init__(self, encoders):
        self.calls = 0
        modules = [encoders.vae.encoder, encoders.text_encoder, encoders.text_encoder_2]
        self.handles = [m.register_forward_pre_hook(self.hook) for m in modules]

    def hook(self, module, args):
        self.calls += 1

    def remove(self):
        for handle in self.handles:
            handle.remove()


@pytest.fixture
def samples(tmp_path_factory):
    folder = make_demo_images(tmp_path_factory.mktemp("images"), n=6, size=64)[0].parent
    (folder / "005_copy.txt").write_text("a red circle on a white to yellow gradient background")
    return scan_folder(folder).samples


def planned(samples, root, resolution=64):
    out = []
    for sample in samples:
        plan = plan_crop(sample.height, sample.width, resolution)
        out.append(PlannedImage(sample, plan, plan.time_ids, "demo", root, root))
    return out


def build(samples, encoders, root, **overrides):
    args = dict(
        fingerprints={"vae": "vae-1", "text": "text-1"},
        batch_size=4,
        progress=False,
    )
    modules = Encoders(**{**encoders.as_kwargs(), **overrides.pop("modules", {})})
    return build_cache(planned(samples, root), modules, **{**args, **overrides})


def test_second_build_runs_no_encoder(samples, encoders, tmp_path):
    counter = PassCounter(encoders)
    try:
        first = build(samples, encoders, tmp_path)
        first_calls = counter.calls
        second = build(samples, encoders, tmp_path)
        assert counter.calls == first_calls
    finally:
        counter.remove()
    captions = {s.caption for s in samples}
    assert first.stats.vae_passes == 2  # 6 images in batches of 4
    assert first.stats.text_passes == 2 * ((len(captions) + 3) // 4)
    assert first.stats.encoder_forward_passes == first_calls
    assert (first.stats.latents_encoded, first.stats.captions_encoded) == (6, len(captions))
    assert first.stats.hits == 0 and first.stats.misses == 6 + len(captions)
    assert second.stats.encoder_forward_passes == 0 and second.stats.misses == 0
    assert second.stats.hits == 6 + len(captions)
    assert second.items == first.items


def test_a_warm_cache_needs_no_models(samples, encoders, tmp_path):
    build(samples, encoders, tmp_path)
    none = dict(vae=None, text_encoder=None, text_encoder_2=None, tokenizer=None, tokenizer_2=None)
    again = build(samples, encoders, tmp_path, modules=none)
    assert again.stats.encoder_forward_passes == 0


def test_a_changed_fingerprint_misses_only_its_own_kind(samples, encoders, tmp_path):
    build(samples, encoders, tmp_path)
    new_vae = build(samples, encoders, tmp_path, fingerprints={"vae": "vae-2", "text": "text-1"})
    assert (new_vae.stats.latents_encoded, new_vae.stats.captions_encoded) == (6, 0)
    new_text = build(samples, encoders, tmp_path, fingerprints={"vae": "vae-1", "text": "text-2"})
    assert new_text.stats.latents_encoded == 0 and new_text.stats.captions_encoded > 0


def test_cached_dataset_serves_what_the_encoders_make(samples, encoders, tmp_path):
    encoded = build(samples, encoders, tmp_path)
    dataset = CachedDataset(encoded.items)
    assert len(dataset) == len(samples) == 6
    for index in (0, 1):  # a square and a portrait image
        sample, item = samples[index], dataset[index]
        prepared = prepare(load_image(sample.path), 64)
        expected = encode_latents(encoders.vae, prepared.pixels[None])[0]
        torch.testing.assert_close(item["latents"], expected)
        embeds, pooled = encode_prompts(
            encoders.text_encoder,
            encoders.text_encoder_2,
            encoders.tokenizer,
            encoders.tokenizer_2,
            [sample.caption],
        )
        torch.testing.assert_close(item["prompt_embeds"], embeds[0])
        torch.testing.assert_close(item["pooled_prompt_embeds"], pooled[0])
        assert item["time_ids"].tolist() == list(prepared.time_ids)
    assert dataset[1]["time_ids"].tolist() == [85, 64, 10, 0, 64, 64]


def test_a_changed_or_undecodable_file_is_left_out_not_cached(samples, encoders, tmp_path):
    moved = replace(samples[0], height=samples[0].height + 1)
    whole = samples[1].path.read_bytes()
    samples[1].path.write_bytes(whole[: len(whole) // 2])  # truncated after the scan
    result = build([moved, samples[1], samples[2]], encoders, tmp_path)
    assert [item.path for item in result.items] == [samples[2].path]
    reasons = dict(result.failed)
    assert "changed since the folder was scanned" in reasons[samples[0].path]
    assert "changed since" in reasons[samples[1].path]  # its bytes no longer match
    assert result.stats.latents_encoded == 1


def test_a_truncated_file_is_left_out(tmp_path, encoders):
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    noise = (torch.rand(64, 64, 3, generator=rng) * 255).to(torch.uint8).numpy()
    whole = tmp_path / "data" / "cut.png"
    whole.parent.mkdir()
    Image.fromarray(noise).save(whole)
    whole.write_bytes(whole.read_bytes()[:3000])
    make_demo_images(whole.parent, n=1, size=64)
    scanned = scan_folder(whole.parent).samples
    assert len(scanned) == 2  # the header of the cut file reads fine
    result = build(scanned, encoders, tmp_path / "cache")
    assert [p.name for p, _ in result.failed] == ["cut.png"] and len(result.items) == 1


def test_concurrent_builds_encode_each_entry_once(samples, encoders, tmp_path):
    results = []

    def run():
        results.append(build(samples, encoders, tmp_path, batch_size=2))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    captions = {s.caption for s in samples}
    assert sum(r.stats.latents_encoded for r in results) == 6
    assert sum(r.stats.captions_encoded for r in results) == len(captions)
    assert results[0].items == results[1].items


def test_an_entry_another_builder_holds_is_waited_for_not_recomputed(samples, encoders, tmp_path):
    cache, results = Cache(tmp_path), []
    first = planned(samples, tmp_path)[0]
    key = latent_key("vae-1", first.sample.digest, first.plan)
    with cache.lock("latents", key):
        worker = threading.Thread(target=lambda: results.append(build(samples, encoders, tmp_path)))
        worker.start()
        time.sleep(0.5)  # it encodes the chunk without this key, then waits for this one
        assert worker.is_alive()
        cache.put("latents", key, {"latents": torch.zeros(4, 8, 8)})
    worker.join()
    assert results[0].stats.latents_encoded == 5
    assert torch.equal(CachedDataset(results[0].items)[0]["latents"], torch.zeros(4, 8, 8))


def test_progress_bar_reports_images_per_second(samples, encoders, tmp_path, capsys):
    build(samples, encoders, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "caching latents" in err and "img/s" in err


def test_fingerprints_default_to_hashes_of_the_modules(samples, encoders, tmp_path):
    first = build(samples, encoders, tmp_path, fingerprints=None)
    again = build(samples, encoders, tmp_path, fingerprints=None)
    assert first.stats.misses > 0 and again.stats.encoder_forward_passes == 0
    changed = copy.deepcopy(encoders.vae)
    with torch.no_grad():
        changed.encoder.conv_in.bias.add_(0.01)
    other = build(samples, encoders, tmp_path, fingerprints=None, modules={"vae": changed})
    assert (other.stats.latents_encoded, other.stats.captions_encoded) == (6, 0)


def test_text_fingerprint_covers_the_tokenizers(encoders):
    fingerprint = text_encoders_fingerprint("te", "te2", encoders.tokenizer, encoders.tokenizer_2)
    swapped = text_encoders_fingerprint("te", "te2", encoders.tokenizer_2, encoders.tokenizer)
    refiner = text_encoders_fingerprint(None, "te2", None, encoders.tokenizer_2)
    assert len({fingerprint, swapped, refiner}) == 3


def test_tokenizer_fingerprint_ignores_the_state_a_call_leaves(tokenizer_dir):
    fresh = CLIPTokenizer.from_pretrained(tokenizer_dir, model_max_length=77)
    before = tokenizer_fingerprint(fresh)
    fresh(["a cat"], padding="max_length", max_length=77, truncation=True)
    assert tokenizer_fingerprint(fresh) == before
    padded_with_bang = CLIPTokenizer.from_pretrained(tokenizer_dir, pad_token="!")
    assert tokenizer_fingerprint(padded_with_bang) != before


def _flip_last_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # the header and length still look right: only the digest tells
    path.write_bytes(bytes(data))


def test_a_damaged_entry_is_found_at_its_first_read_and_rebuilt(samples, encoders, tmp_path):
    from expertune.data.keys import LATENTS, TEXT

    first = build(samples, encoders, tmp_path)
    item = first.items[2]
    _flip_last_byte(Cache(tmp_path).path(LATENTS, item.latent_key))
    _flip_last_byte(Cache(tmp_path).path(TEXT, item.text_key))
    caches = Caches()
    again = build(samples, encoders, tmp_path, caches=caches)
    assert (again.stats.latents_encoded, again.stats.captions_encoded) == (1, 1)
    assert caches(tmp_path).counts[LATENTS].corrupt == 1
    assert Cache(tmp_path).check(LATENTS, item.latent_key) == "ok"
    served = CachedDataset(again.items, caches)[2]
    expected = CachedDataset(first.items)[2]
    torch.testing.assert_close(served["latents"], expected["latents"], rtol=0, atol=1e-6)


def test_a_training_step_reads_no_file_and_hashes_nothing(samples, encoders, tmp_path, monkeypatch):
    import expertune.data.cache as cache_module

    build(samples, encoders, tmp_path)  # a warm cache: the next build only reads
    caches = Caches()
    encoded = build(samples, encoders, tmp_path, caches=caches)
    dataset = CachedDataset(encoded.items, caches)
    expected = [CachedDataset(encoded.items)[i] for i in range(len(dataset))]

    def forbidden(*args, **kwargs):
        raise AssertionError("the hot path read or hashed a cache file")

    monkeypatch.setattr(cache_module, "_read", forbidden)
    monkeypatch.setattr(cache_module, "tensors_digest", forbidden)
    for _ in range(3):  # every step, every epoch: from memory
        for index in range(len(dataset)):
            for key, value in dataset[index].items():
                assert torch.equal(value, expected[index][key])


def test_without_memory_entries_are_read_but_not_hashed_again(
    samples, encoders, tmp_path, monkeypatch
):
    import expertune.data.cache as cache_module

    build(samples, encoders, tmp_path)
    caches = Caches(memory_budget=0)  # nothing fits: served from disk
    encoded = build(samples, encoders, tmp_path, caches=caches)
    hashed = []
    real = cache_module.tensors_digest
    monkeypatch.setattr(cache_module, "tensors_digest", lambda t: hashed.append(1) or real(t))
    dataset = CachedDataset(encoded.items, caches)
    for index in range(len(dataset)):
        assert dataset[index]["latents"].shape[0] == 4
    assert hashed == []  # verified once by the build, never again in the run
