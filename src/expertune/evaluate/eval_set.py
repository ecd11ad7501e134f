"""Which cached samples evaluation uses: the data room's eval dataset, else a fixed split.

The choice is deterministic and independent of the run's seed and of the folder's
location: samples are ranked by a hash of their file name and caption, so two experts
trained on the same dataloader config evaluate on the same images.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

FALLBACK_SAMPLES = 32  # training samples used when no eval set is configured


@dataclass(frozen=True)
class EvalSet:
    """Samples to evaluate on: an indexable dataset of cached tensors plus their captions."""

    dataset: Sequence  # dataset[i] -> {"latents", "prompt_embeds", "pooled_prompt_embeds", ...}
    captions: tuple[str, ...]
    names: tuple[str, ...]  # file names, for labels
    source: str  # where the samples come from, for the report
    held_out: bool = True  # False when they are training samples

    def __len__(self) -> int:
        return len(self.dataset)


def eval_rank(items: Sequence) -> list[int]:
    """Indices of `items` (with .path and .caption) in a fixed pseudo-random order."""

    def key(i: int) -> str:
        item = items[i]
        return hashlib.sha256(f"{item.path.name}\0{item.caption}".encode()).hexdigest()

    return sorted(range(len(items)), key=key)


def split_items(items: Sequence, fraction: float) -> tuple[list[int], list[int]]:
    """(train, eval) indices for `--eval_split`: at least one of each when possible.

    The data room can call this to hold the eval samples out of training; evaluation
    picks the same ones.
    """
    if fraction <= 0 or len(items) < 2:
        return list(range(len(items))), []
    ranked = eval_rank(items)
    n_eval = min(len(items) - 1, max(1, math.ceil(fraction * len(items))))
    held = sorted(ranked[:n_eval])
    kept = sorted(ranked[n_eval:])
    return kept, held


def subset(dataset, indices: Sequence[int], source: str, held_out: bool = True) -> EvalSet:
    """The samples `indices` of a cached dataset (one with `.items`) as an EvalSet."""
    from torch.utils.data import Subset

    items = [dataset.items[i] for i in indices]
    return EvalSet(
        Subset(dataset, list(indices)),
        tuple(item.caption for item in items),
        tuple(item.path.name for item in items),
        source,
        held_out,
    )


def eval_set_for(data, eval_split: float) -> EvalSet:
    """The eval set of a run: `data.eval_dataset` if the data room made one, else a split.

    `data` is the trainer's TrainData. Without an eval dataset the samples come from the
    training set (`held_out` False): the `--eval_split` fraction `split_items` picks, or a
    fixed sample of FALLBACK_SAMPLES when no split is set.
    """
    provided = getattr(data, "eval_dataset", None)
    if provided is not None and len(provided):
        return subset(provided, range(len(provided)), 'eval dataset (dataset_type "eval")')
    train = data.dataset
    if eval_split > 0:
        held = split_items(train.items, eval_split)[1]
        if held:  # chosen as the data room would hold them out, but still trained on here
            source = f"--eval_split={eval_split:g} of the training set (not held out)"
            return subset(train, held, source, held_out=False)
    chosen = sorted(eval_rank(train.items)[:FALLBACK_SAMPLES])
    return subset(train, chosen, f"{len(chosen)} training images (not held out)", False)


def validation_set_for(data, count: int) -> EvalSet:
    """`count` samples for dataset validation: held-out eval samples if there are any,
    else training samples of datasets that allow validation (`data.validation_dataset`,
    without `disable_validation`), else the training set; the same ones every time."""
    for name, source, held_out in (
        ("eval_dataset", "eval images", True),
        ("validation_dataset", "training images", False),
        ("dataset", "training images", False),
    ):
        pool = getattr(data, name, None)
        if pool is not None and len(pool.items):
            chosen = sorted(eval_rank(pool.items)[:count])
            return subset(pool, chosen, f"{len(chosen)} {source}", held_out)
    return subset(data.dataset, [], "no images", False)
