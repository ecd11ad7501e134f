"""The dataloader config: SimpleTuner's `multidatabackend.json`, a JSON list of datasets.

Each entry becomes a frozen spec: `ImageDatasetSpec` for `dataset_type` "image" (trained
on) and "eval" (held out for evaluation), `TextEmbedsSpec` for "text_embeds" (where caption
embeddings are cached). Defaults follow SimpleTuner, so a config written for it means the
same here. Keys fall in three groups:

- understood keys (the spec fields below);
- `IGNORED_KEYS`: SimpleTuner knobs for its own caches and storage that change nothing
  about what is trained here (accepted silently);
- `UNSUPPORTED_KEYS`: SimpleTuner features expertune does not have; accepted only with an
  empty/default value, otherwise a ConfigError says so.

Any other key is a ConfigError naming the nearest known key and, when it can be found, the
line it is on. With no dataloader config, `single_folder` makes the one-dataset config
that INSTANCE_DIR stands for.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from expertune.errors import ConfigError

IGNORED_KEYS = frozenset(
    {
        "skip_file_discovery",
        "preserve_data_backend_cache",
        "metadata_backend",
        "write_batch_size",
        "text_encoder_batch_size",
        "vae_batch_size",
        "hash_filenames",
        "maximum_image_size",  # images are always resized to cover their bucket first
        "target_downsample_size",
        "vae_cache_clear_each_epoch",  # a crop is decided once per image and cached
        "disable_multiline_split",  # caption files are read whole, never split
        "metadata_update_interval",
    }
)
UNSUPPORTED_KEYS = frozenset(
    {
        "aws_bucket_name",
        "aws_region_name",
        "aws_endpoint_url",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_data_prefix",
        "csv_file",
        "csv_cache_dir",
        "csv_caption_column",
        "parquet",
        "huggingface",
        "conditioning",
        "source_dataset_id",
        "image_embeds",
        "conditioning_image_embeds",
        "video",
        "audio",
        "caption_filter_list",
        "caption_shuffle",
        "is_regularisation_data",
        "is_regularization_data",
        "max_num_samples",
        "max_upscale_threshold",
        "start_epoch",
        "start_step",
        "end_epoch",
        "end_step",
        "slider_strength",
        "timestep_sampling_offset",
        "text_cache_ondemand",
        "text_cache_disable",
        "vae_cache_ondemand",
        "vae_cache_disable",
        "delete_unwanted_images",
        "delete_problematic_images",
        "grounding",
    }
)
_HARMLESS_DEFAULTS = {"start_epoch": 1, "start_step": 0}

Number = float | int


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1)
    type: Literal["local"] = "local"  # storage backend; only local folders here
    disabled: bool = False


class TextEmbedsSpec(_Spec):
    """Where caption embeddings are cached; `default` marks the one image datasets use."""

    dataset_type: Literal["text_embeds"]
    default: bool = False
    cache_dir: str | None = None  # None or "": CACHE_DIR


class AspectWeight(BaseModel):
    """One entry of `crop_aspect_buckets` in its weighted form, for crop_aspect "random"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    aspect: float = Field(gt=0)
    weight: float = Field(1.0, gt=0)


class ImageDatasetSpec(_Spec):
    """A folder of images to train on ("image"), to hold out for evaluation ("eval"), or
    the ControlNet conditioning images of an image dataset ("conditioning", same file
    names; only its folder is read: each image is cropped as its training image is)."""

    dataset_type: Literal["image", "eval", "conditioning"] = "image"
    instance_data_dir: str = Field(min_length=1)
    caption_strategy: Literal["filename", "textfile", "instanceprompt"] = "filename"
    instance_prompt: str | None = None
    prepend_instance_prompt: bool = False
    only_instance_prompt: bool = False
    resolution: Number | None = Field(None, gt=0)  # None: --resolution, in pixels
    resolution_type: Literal["pixel", "area", "pixel_area"] = "pixel"
    minimum_image_size: Number | None = Field(None, ge=0)  # in resolution_type's unit
    minimum_aspect_ratio: float | None = Field(None, gt=0)  # width / height
    maximum_aspect_ratio: float | None = Field(None, gt=0)
    crop: bool = False
    crop_style: Literal["random", "center", "corner"] = "random"
    crop_aspect: Literal["square", "preserve", "closest", "random"] = "square"
    crop_aspect_buckets: tuple[float | AspectWeight, ...] | None = None  # width / height
    repeats: int = Field(0, ge=0)  # extra passes per epoch: 0 = each image once
    probability: float = Field(1.0, gt=0)  # relative chance the next batch comes from here
    disable_validation: bool = False  # never pick this dataset's images for validation
    cache_dir_vae: str | None = None  # None or "": CACHE_DIR
    text_embeds: str | None = None  # id of a text_embeds dataset; None: the default one
    conditioning_data: str | None = None  # id of its conditioning dataset (ControlNet)
    conditioning_type: str | None = None  # SimpleTuner's label (canny, depth, ...); kept

    @model_validator(mode="after")
    def _consistent(self) -> ImageDatasetSpec:
        needs_prompt = self.caption_strategy == "instanceprompt" or self.only_instance_prompt
        if (needs_prompt or self.prepend_instance_prompt) and not self.instance_prompt:
            raise ValueError("instance_prompt is needed by this caption strategy; set it")
        low, high = self.minimum_aspect_ratio, self.maximum_aspect_ratio
        if low is not None and high is not None and low > high:
            raise ValueError("minimum_aspect_ratio is above maximum_aspect_ratio")
        for bucket in self.crop_aspect_buckets or ():
            if isinstance(bucket, float | int) and bucket <= 0:
                raise ValueError("crop_aspect_buckets must be positive width/height ratios")
        return self

    @property
    def trains(self) -> bool:
        return self.dataset_type == "image"


_IMAGE_KEYS = frozenset(ImageDatasetSpec.model_fields)
_TEXT_KEYS = frozenset(TextEmbedsSpec.model_fields)
KNOWN_KEYS = _IMAGE_KEYS | _TEXT_KEYS


@dataclass(frozen=True)
class DataloaderConfig:
    """The enabled datasets of one dataloader config, and where it came from."""

    source: str  # the file, or "INSTANCE_DIR"
    images: tuple[ImageDatasetSpec, ...]  # dataset_type image and eval, in file order
    text_embeds: tuple[TextEmbedsSpec, ...]
    conditioning: tuple[ImageDatasetSpec, ...] = ()  # dataset_type conditioning (ControlNet)

    @property
    def training(self) -> tuple[ImageDatasetSpec, ...]:
        return tuple(spec for spec in self.images if spec.trains)

    def conditioning_of(self, spec: ImageDatasetSpec) -> ImageDatasetSpec | None:
        """The conditioning dataset `spec` names in `conditioning_data`, or None."""
        if not spec.conditioning_data:
            return None
        return next(c for c in self.conditioning if c.id == spec.conditioning_data)

    @property
    def evaluation(self) -> tuple[ImageDatasetSpec, ...]:
        return tuple(spec for spec in self.images if not spec.trains)

    def text_cache_dir(self, spec: ImageDatasetSpec, default: str) -> str:
        """The text embedding cache folder of an image dataset (CACHE_DIR when unset)."""
        chosen = None
        if spec.text_embeds:
            chosen = next(t for t in self.text_embeds if t.id == spec.text_embeds)
        elif self.text_embeds:
            defaults = [t for t in self.text_embeds if t.default]
            chosen = defaults[0] if defaults else self.text_embeds[0]
        return (chosen.cache_dir if chosen else None) or default

    def latent_cache_dir(self, spec: ImageDatasetSpec, default: str) -> str:
        """The latent cache folder of an image dataset (CACHE_DIR when unset)."""
        return spec.cache_dir_vae or default


def single_folder(folder: str, resolution: int) -> DataloaderConfig:
    """INSTANCE_DIR as a dataloader config: .txt captions (the filename when absent),
    square centre crops at RESOLUTION."""
    spec = ImageDatasetSpec(
        id="instance_data_dir",
        instance_data_dir=folder,
        caption_strategy="textfile",
        resolution=resolution,
        crop=True,
        crop_style="center",
        crop_aspect="square",
    )
    return DataloaderConfig("INSTANCE_DIR", (spec,), ())


def with_defaults(config: DataloaderConfig, defaults: dict) -> DataloaderConfig:
    """Top-level defaults (SimpleTuner's --resolution_type, --minimum_image_size) for every
    image dataset that does not set the key itself; None values are no default."""
    given = {k: v for k, v in defaults.items() if v is not None}
    if not given:
        return config
    images = tuple(
        spec.model_copy(update={k: v for k, v in given.items() if k not in spec.model_fields_set})
        for spec in config.images
    )
    return DataloaderConfig(config.source, images, config.text_embeds, config.conditioning)


def read_dataloader_config(path: str | Path) -> DataloaderConfig:
    """Parse and check a dataloader JSON; every mistake is one ConfigError line."""
    path = Path(path)
    text = _read_text(path)
    images, text_embeds, conditioning = [], [], []
    for index, entry in enumerate(_entries(path, text)):
        where = f"DATALOADER_CONFIG {path}: dataset {entry.get('id', f'#{index + 1}')!r}"
        _check_keys(entry, where, text)
        fields = {k: v for k, v in entry.items() if k in KNOWN_KEYS}
        kind = fields.get("dataset_type", "image")
        if kind not in ("image", "eval", "text_embeds", "conditioning"):
            raise ConfigError(
                f"{where}: dataset_type {kind!r} is not supported; use image, eval, "
                "conditioning or text_embeds"
            )
        model = TextEmbedsSpec if kind == "text_embeds" else ImageDatasetSpec
        spec = _validate(model, fields, where, text)
        if not spec.disabled:
            chosen = {"text_embeds": text_embeds, "conditioning": conditioning}
            chosen.get(kind, images).append(spec)
    config = DataloaderConfig(str(path), tuple(images), tuple(text_embeds), tuple(conditioning))
    _check_references(config, f"DATALOADER_CONFIG {path}")
    return config


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"DATALOADER_CONFIG {path} does not exist; point it at a JSON file")
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"DATALOADER_CONFIG {path} cannot be read ({exc}); save it as UTF-8"
        ) from None


def _entries(path: Path, text: str) -> list[dict]:
    try:
        data = json.loads(text, object_pairs_hook=_no_repeats(path, text))
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"DATALOADER_CONFIG {path} is not valid JSON (line {exc.lineno}, column "
            f"{exc.colno}: {exc.msg}); fix the file there"
        ) from None
    if isinstance(data, dict):
        data = [data]  # SimpleTuner also accepts a single dataset object
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ConfigError(f"DATALOADER_CONFIG {path} must be a JSON list of dataset objects")
    for entry in data:  # SimpleTuner's other spelling
        if "disable" in entry and "disabled" not in entry:
            entry["disabled"] = entry.pop("disable")
    return data


def _no_repeats(path: Path, text: str):
    """A json object_pairs_hook refusing a key written twice in one object (json would
    keep the last one silently)."""

    def hook(pairs: list[tuple[str, object]]) -> dict:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                lines = [n for n, line in enumerate(text.splitlines(), 1) if f'"{key}"' in line]
                at = f" (lines {', '.join(map(str, lines[:3]))})" if len(lines) > 1 else ""
                raise ConfigError(
                    f"DATALOADER_CONFIG {path}: key {key!r} is set twice in one dataset{at}; "
                    "keep one of them"
                )
            seen[key] = value
        return seen

    return hook


def _check_keys(entry: dict, where: str, text: str) -> None:
    for key, value in entry.items():
        if key in KNOWN_KEYS or key in IGNORED_KEYS:
            continue
        at = _line_of(text, key)
        if key in UNSUPPORTED_KEYS:
            if not value or _HARMLESS_DEFAULTS.get(key) == value:
                continue
            raise ConfigError(
                f"{where}: {key!r}{at} is a SimpleTuner option expertune does not support; "
                "remove it (see docs/datasets.md)"
            )
        found = difflib.get_close_matches(key, sorted(KNOWN_KEYS), n=1, cutoff=0.6)
        hint = f"did you mean {found[0]!r}?" if found else "see docs/datasets.md for the keys"
        raise ConfigError(f"{where}: unknown key {key!r}{at} ({hint})")


def _line_of(text: str, key: str) -> str:
    """' (line N)' for the first line holding `"key"`, or '' when it cannot be found."""
    for number, line in enumerate(text.splitlines(), start=1):
        if f'"{key}"' in line:
            return f" (line {number})"
    return ""


_WHY = {  # what a wrong value of a key means here, beyond the accepted values
    "type": "expertune reads local folders only; copy the images to a local folder",
}


def _validate(model: type[_Spec], fields: dict, where: str, text: str = "") -> _Spec:
    """The spec, or a ConfigError naming the key, its line, the value and what works."""
    try:
        return model.model_validate(fields)
    except ValidationError as err:
        first = err.errors()[0]
        key = str(first["loc"][0]) if first["loc"] else "entry"
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "missing":
            message = "is required; add it"
        elif first["type"] == "literal_error":
            value = fields.get(str(first["loc"][0])) if first["loc"] else None
            why = f" ({_WHY[key]})" if key in _WHY else ""
            message = f"is {value!r}; it must be {first['ctx']['expected']}{why}"
        elif "input" in first and first["loc"]:
            message = f"is {first['input']!r}: {message[:1].lower()}{message[1:]}"
        raise ConfigError(f"{where}: {key}{_line_of(text, key)} {message}") from None


def _check_references(config: DataloaderConfig, where: str) -> None:
    ids = [spec.id for spec in (*config.images, *config.text_embeds, *config.conditioning)]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ConfigError(f"{where}: dataset id {duplicates[0]!r} is used twice; ids must differ")
    if sum(t.default for t in config.text_embeds) > 1:
        raise ConfigError(f"{where}: more than one text_embeds dataset has default: true")
    text_ids = {t.id for t in config.text_embeds}
    for spec in config.images:
        if spec.text_embeds and spec.text_embeds not in text_ids:
            raise ConfigError(
                f"{where}: dataset {spec.id!r} names text_embeds {spec.text_embeds!r}, which "
                "is not an enabled text_embeds dataset; fix the id"
            )
    conditioning_ids = {c.id for c in config.conditioning}
    for spec in config.images:
        if spec.conditioning_data and spec.conditioning_data not in conditioning_ids:
            raise ConfigError(
                f"{where}: dataset {spec.id!r} names conditioning_data "
                f"{spec.conditioning_data!r}, which is not an enabled dataset with "
                'dataset_type "conditioning"; fix the id or add that dataset'
            )
    if not config.training:
        raise ConfigError(f"{where} has no enabled image dataset; add one or set disabled: false")
