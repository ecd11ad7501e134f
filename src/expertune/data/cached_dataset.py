"""Samples served from the cache: latents, prompt embeddings, pooled embeddings, time ids."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from expertune.data.cache import Caches
from expertune.data.encode import EncodedItem
from expertune.data.keys import LATENTS, TEXT
from expertune.errors import DataError


class CachedDataset(Dataset):
    """Samples read from the cache: latents, prompt embeddings, pooled, time ids.

    `items[i]` (an EncodedItem) says what sample i is: path, caption, dataset, bucket.
    """

    def __init__(self, items: Sequence[EncodedItem], caches: Caches | None = None) -> None:
        self.items = list(items)
        self.caches = caches or Caches()
        self.empty_caption_key: str | None = None  # set when "" is cached (caption dropout)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.items[index]
        latents = self.caches(item.latent_root).get(LATENTS, item.latent_key)
        text = self.caches(item.text_root).get(TEXT, item.text_key)
        if latents is None or text is None:
            raise DataError(
                f"cache entry for {item.path} is missing or damaged under "
                f"{item.latent_root if latents is None else item.text_root}; "
                "run `expertune cache build` or the training job again"
            )
        return {
            "latents": latents["latents"],
            "prompt_embeds": text["prompt_embeds"],
            "pooled_prompt_embeds": text["pooled_prompt_embeds"],
            "time_ids": torch.tensor(item.time_ids, dtype=torch.float32),
        }

    def without_caption(self, index: int) -> dict[str, torch.Tensor]:
        """Sample `index` with the empty caption's embeddings (cached once per text folder),
        for caption dropout; the latents and time ids are the sample's own."""
        sample = self[index]
        root = self.items[index].text_root
        text = None
        if self.empty_caption_key is not None:
            text = self.caches(root).get(TEXT, self.empty_caption_key)
        if text is None:
            raise DataError(
                f"the empty caption's embeddings are not cached under {root}; "
                "run the training job again"
            )
        sample["prompt_embeds"] = text["prompt_embeds"]
        sample["pooled_prompt_embeds"] = text["pooled_prompt_embeds"]
        return sample
