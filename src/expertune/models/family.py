"""Model families as data: which parts a family has and how it is conditioned.

A family says which diffusers components to load, which text encoders feed the UNet's
cross-attention, where the pooled embedding comes from and what the micro-conditioning
"time ids" hold. SDXL base and the SDXL refiner differ only in these facts, so they are
two values of one frozen dataclass rather than two code paths.
"""

from __future__ import annotations

from dataclasses import dataclass

from expertune.errors import ConfigError, ModelReferenceError

SDXL_PIPELINES = (
    "StableDiffusionXLPipeline",
    "StableDiffusionXLImg2ImgPipeline",
    "StableDiffusionXLInpaintPipeline",
)


@dataclass(frozen=True)
class Family:
    """Components and conditioning layout of one model family."""

    name: str
    components: tuple[str, ...]  # model_index.json entries that must be present
    tokenizers: tuple[str, ...]  # one per text encoder, same order
    text_encoders: tuple[str, ...]  # their penultimate hidden states are concatenated
    pooled_from: str  # the encoder whose projected EOS embedding is the pooled embed
    time_ids: tuple[tuple[str, int], ...]  # (field, number of values), in UNet order
    requires_aesthetics_score: bool
    hidden_state_index: int = -2  # SDXL conditions on the penultimate layer
    aesthetic_score: float = 6.0  # diffusers' defaults for the refiner's time ids
    negative_aesthetic_score: float = 2.5

    @property
    def num_time_ids(self) -> int:
        """Values per sample in `add_time_ids` (6 for SDXL, 5 for the refiner)."""
        return sum(width for _, width in self.time_ids)

    @property
    def weight_folders(self) -> tuple[str, ...]:
        """Components that hold weights (and so must be safetensors)."""
        return ("unet", "vae", *self.text_encoders)


SDXL = Family(
    name="sdxl",
    components=(
        "tokenizer",
        "tokenizer_2",
        "text_encoder",
        "text_encoder_2",
        "vae",
        "unet",
        "scheduler",
    ),
    tokenizers=("tokenizer", "tokenizer_2"),
    text_encoders=("text_encoder", "text_encoder_2"),
    pooled_from="text_encoder_2",
    time_ids=(("original_size", 2), ("crops_coords_top_left", 2), ("target_size", 2)),
    requires_aesthetics_score=False,
)

SDXL_REFINER = Family(
    name="sdxl-refiner",
    components=("tokenizer_2", "text_encoder_2", "vae", "unet", "scheduler"),
    tokenizers=("tokenizer_2",),
    text_encoders=("text_encoder_2",),
    pooled_from="text_encoder_2",
    time_ids=(("original_size", 2), ("crops_coords_top_left", 2), ("aesthetic_score", 1)),
    requires_aesthetics_score=True,
)

FAMILIES: dict[str, Family] = {f.name: f for f in (SDXL, SDXL_REFINER)}


def get_family(name: str) -> Family:
    """The family called `name`; a ConfigError listing the known ones otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        known = ", ".join(FAMILIES)
        raise ConfigError(f"unknown model family {name!r}; expected one of: {known}") from None


def _present(model_index: dict, component: str) -> bool:
    """Whether model_index.json lists `component` with a library (not [null, null])."""
    entry = model_index.get(component)
    return isinstance(entry, list | tuple) and len(entry) == 2 and entry[0] is not None


def detect_family(model_index: dict, *, where: str = "model_index.json") -> str:
    """The family name ("sdxl" or "sdxl-refiner") of a parsed model_index.json.

    SDXL pipelines without `text_encoder`, or with `requires_aesthetics_score`, are
    refiners. Anything else raises a one-line ModelReferenceError naming what was found.
    """
    found = model_index.get("_class_name", "no _class_name")
    if found not in SDXL_PIPELINES:
        raise ModelReferenceError(
            f"{where} describes a {found}, not an SDXL model; expected one of "
            f"{', '.join(SDXL_PIPELINES)} (families: {', '.join(FAMILIES)})"
        )
    refiner = model_index.get("requires_aesthetics_score") or not _present(
        model_index, "text_encoder"
    )
    family = SDXL_REFINER if refiner else SDXL
    missing = [c for c in family.components if not _present(model_index, c)]
    if missing:
        raise ModelReferenceError(
            f"{where} describes a {found} without {', '.join(missing)}; "
            f"a {family.name} model needs {', '.join(family.components)}"
        )
    return family.name
