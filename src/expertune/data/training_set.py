"""One job's data, cached and grouped: `prepare_data` plans the images (planning.py),
fills the caches (encode.py) and groups the training samples by (dataset, bucket) for
the batch order (train/order.py); `eval_samples` does the same for the eval datasets
alone. Everything left out is reported once (report.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from expertune.data.cache import Caches, cache_key
from expertune.data.cached_dataset import CachedDataset
from expertune.data.dataset_config import DataloaderConfig, ImageDatasetSpec
from expertune.data.encode import EncodedItem, Encoders, EncodeStats, build_cache
from expertune.data.keys import text_key
from expertune.data.planning import (
    bucket_alignment,
    dataloader_config,
    plan_images,
    require_images,
)
from expertune.data.report import DataReport, count


@dataclass(frozen=True)
class Group:
    """The training samples of one bucket of one dataset; a batch never mixes groups."""

    source: str  # dataset id
    bucket: tuple[int, int]
    items: tuple[int, ...]  # indices into TrainingSet.items
    repeats: int  # extra passes per epoch
    probability: float  # relative chance the next batch comes from this dataset

    def batches(self, global_batch: int) -> int:
        """Batches this group serves per epoch (the last one filled by wrapping around)."""
        return math.ceil(len(self.items) * (self.repeats + 1) / global_batch)


class TrainingSet(CachedDataset):
    """The training samples (`items`), grouped by (dataset, bucket) in `groups`.

    `len()` is the number of samples one epoch serves (batches x global batch, with
    repeats), which is what an epoch count means for the step count; index with
    `range(len(set.items))`, not `range(len(set))`.
    """

    def __init__(
        self,
        items: Sequence[EncodedItem],
        caches: Caches,
        specs: Sequence[ImageDatasetSpec],
        global_batch: int,
    ) -> None:
        super().__init__(items, caches)
        self.global_batch = global_batch
        by_id = {spec.id: spec for spec in specs}
        found: dict[tuple[str, tuple[int, int]], list[int]] = {}
        for index, item in enumerate(self.items):
            found.setdefault((item.dataset, item.bucket), []).append(index)
        self.groups = [
            Group(d, b, tuple(ix), by_id[d].repeats, by_id[d].probability)
            for (d, b), ix in found.items()
        ]

    def __len__(self) -> int:
        return sum(g.batches(self.global_batch) for g in self.groups) * self.global_batch

    @property
    def fingerprint(self) -> str:
        """sha256 of what decides the batch order (samples, groups, repeats, probability,
        global batch): equal fingerprints mean a checkpoint's position means the same."""
        parts = [str(self.global_batch)]
        for group in self.groups:
            keys = ",".join(self.items[i].latent_key + self.items[i].text_key for i in group.items)
            parts.append(
                f"{group.source}|{group.bucket}|{group.repeats}|{group.probability}|{keys}"
            )
        return cache_key(*parts)

    def describe(self) -> str:
        """'N images, B buckets (HxW: n, ...)' for the log."""
        sizes: dict[tuple[int, int], int] = {}
        for group in self.groups:
            sizes[group.bucket] = sizes.get(group.bucket, 0) + len(group.items)
        shown = ", ".join(f"{w}x{h}: {n}" for (h, w), n in sorted(sizes.items()))
        return f"{len(self.items)} training images in {count(len(sizes), 'bucket')} ({shown})"


@dataclass
class PreparedData:
    """A job's data, cached: training set, held-out eval set, validation pool, records."""

    training: TrainingSet
    eval_dataset: CachedDataset | None  # dataset_type "eval" (or the hold_out split)
    validation_dataset: CachedDataset  # training samples of datasets allowing validation
    stats: EncodeStats
    report: DataReport
    fingerprints: dict[str, str]


def prepare_data(
    cfg,
    components,
    *,
    global_batch: int,  # samples per optimizer micro-step, all processes together
    progress: bool = True,
    hold_out: Callable[[list[EncodedItem]], list[int]] | None = None,  # eval split
) -> PreparedData:
    """Plan, cache and group the data of `cfg` for the model `components`.

    `hold_out` picks training items to hold out as the eval set when the config has no
    eval dataset (indices into the training items).
    """
    from expertune.models.family import get_family

    encoders = Encoders.of(components)
    plan = plan_images(cfg, get_family(components.family), bucket_alignment(cfg, components.vae))
    fingerprints = encoders.fingerprints()
    caches = Caches()
    encoded = build_cache(
        plan.images,
        encoders,
        fingerprints=fingerprints,
        batch_size=cfg.vae_batch_size,
        progress=progress,
        caches=caches,
        extra_captions=("",) if getattr(cfg, "caption_dropout_probability", 0) else (),
    )
    plan.report.add_failures(encoded.failed)
    specs = plan.config.images
    for spec in specs:
        require_images(spec, [i for i in encoded.items if i.dataset == spec.id], plan.report)
    evaluated = {spec.id for spec in plan.config.evaluation}
    training = [item for item in encoded.items if item.dataset not in evaluated]
    evals = [item for item in encoded.items if item.dataset in evaluated]
    if not evals and hold_out is not None:
        held = set(hold_out(training))
        evals = [item for i, item in enumerate(training) if i in held]
        training = [item for i, item in enumerate(training) if i not in held]
    validating = {spec.id for spec in specs if not spec.disable_validation}
    training_set = TrainingSet(training, caches, specs, global_batch)
    plan.report.long_captions = long_captions(encoders, encoded.items)
    plan.report.small_groups = [
        (g.source, g.bucket, len(g.items) * (g.repeats + 1), global_batch)
        for g in training_set.groups
        if len(g.items) * (g.repeats + 1) < global_batch
    ]
    training_set.hold(encoded.claim)  # eval and validation samples are among its entries
    if getattr(cfg, "caption_dropout_probability", 0):
        training_set.empty_caption_key = text_key(fingerprints["text"], "")
    return PreparedData(
        training=training_set,
        eval_dataset=CachedDataset(evals, caches) if evals else None,
        validation_dataset=CachedDataset([i for i in training if i.dataset in validating], caches),
        stats=encoded.stats,
        report=plan.report,
        fingerprints=fingerprints,
    )


def long_captions(encoders: Encoders, items: Sequence[EncodedItem]) -> list[tuple]:
    """(image, tokens, limit) for captions the text encoders cut at their token limit.

    Caption embeddings are made with truncation (as SDXL's pipeline does); this says how
    much each long caption lost. Needs only the tokenizers, so a warm cache reports it too.
    """
    tokenizer = encoders.tokenizer or encoders.tokenizer_2
    if tokenizer is None or not items:
        return []
    limit = int(tokenizer.model_max_length)
    captions = sorted({item.caption for item in items})
    lengths = dict(zip(captions, (len(ids) for ids in tokenizer(captions).input_ids), strict=True))
    return [
        (item.path, lengths[item.caption], limit) for item in items if lengths[item.caption] > limit
    ]


def eval_samples(cfg, components, *, progress: bool = False) -> CachedDataset | None:
    """The encoded samples of the config's `dataset_type: "eval"` datasets, or None.

    For the evaluation room: builds any missing cache entries (none when the training job
    already cached them, as it does) and returns a CachedDataset: `ds[i]` is {"latents"
    (4, h/8, w/8), "prompt_embeds" (77, D), "pooled_prompt_embeds" (D2,), "time_ids"
    (6,), or (5,) for the refiner layout}, and `ds.items[i]` is its EncodedItem (path,
    caption, dataset, bucket (h, w)). Samples of different buckets have different latent
    sizes: batch them by `items[i].bucket`. A training job already has the same set as
    `TrainData.eval_dataset`.
    """
    from expertune.models.family import get_family

    config = dataloader_config(cfg)
    if not config.evaluation:
        return None
    only_eval = DataloaderConfig(config.source, config.evaluation, config.text_embeds)
    alignment = bucket_alignment(cfg, components.vae)
    plan = plan_images(cfg, get_family(components.family), alignment, config=only_eval)
    caches = Caches()
    encoded = build_cache(
        plan.images,
        Encoders.of(components),
        batch_size=cfg.vae_batch_size,
        progress=progress,
        caches=caches,
    )
    plan.report.add_failures(encoded.failed)
    for spec in only_eval.images:
        require_images(spec, [i for i in encoded.items if i.dataset == spec.id], plan.report)
    dataset = CachedDataset(encoded.items, caches)
    dataset.hold(encoded.claim)
    return dataset
