"""Samples served from the cache: latents, prompt embeddings, pooled embeddings, time ids."""

from __future__ import annotations

import weakref
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from expertune.data.cache import Caches
from expertune.data.conditioning_images import KEY as CONDITIONING
from expertune.data.encode import EncodedItem
from expertune.data.keys import LATENTS, TEXT
from expertune.errors import DataError


class CachedDataset(Dataset):
    """Samples read from the cache: latents, prompt embeddings, pooled, time ids.

    Entries are served from memory when the build kept them there (cache.MemoryStore),
    else read without re-hashing: a step reads no file and hashes nothing when they fit.

    `items[i]` (an EncodedItem) says what sample i is: path, caption, dataset, bucket.
    """

    def __init__(self, items: Sequence[EncodedItem], caches: Caches | None = None) -> None:
        self.items = list(items)
        self.caches = caches or Caches()
        self.empty_caption_key: str | None = None  # set when "" is cached (caption dropout)

    def __len__(self) -> int:
        return len(self.items)

    def in_memory(self) -> bool:
        """Whether every entry read so far is held in memory (none is served from disk)."""
        return self.caches.memory.left_out == 0

    def hold(self, claim) -> None:
        """Keep `claim` (cache_use.Claim on these entries) until this dataset is gone."""
        if claim is not None:
            self._claims = [*getattr(self, "_claims", []), claim]
            weakref.finalize(self, claim.close)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        latents = self.caches(item.latent_root).serve(LATENTS, item.latent_key)
        text = self.caches(item.text_root).serve(TEXT, item.text_key)
        if latents is None or text is None:
            raise DataError(
                f"cache entry for {item.path} disappeared or was damaged during the run under "
                f"{item.latent_root if latents is None else item.text_root} (deleted by hand "
                "or by a prune?); run the job again: it rebuilds missing entries"
            )
        sample = {
            "latents": latents["latents"],
            "prompt_embeds": text["prompt_embeds"],
            "pooled_prompt_embeds": text["pooled_prompt_embeds"],
            "time_ids": torch.tensor(item.time_ids, dtype=torch.float32),
        }
        if CONDITIONING in latents:  # ControlNet: (3, H, W) in [0, 1], cropped as the latents
            sample[CONDITIONING] = latents[CONDITIONING]
        return sample

    def without_caption(self, index: int) -> dict[str, torch.Tensor]:
        """Sample `index` with the empty caption's embeddings (cached once per text folder),
        for caption dropout; the latents and time ids are the sample's own."""
        sample = self[index]
        root = self.items[index].text_root
        text = None
        if self.empty_caption_key is not None:  # verified once, then from memory
            text = self.caches(root).serve(TEXT, self.empty_caption_key)
        if text is None:
            raise DataError(
                f"the empty caption's embeddings are not cached under {root}; "
                "run the training job again"
            )
        sample["prompt_embeds"] = text["prompt_embeds"]
        sample["pooled_prompt_embeds"] = text["pooled_prompt_embeds"]
        return sample
