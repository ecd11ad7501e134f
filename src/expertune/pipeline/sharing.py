"""Which parts two experts can share at inference: only those recorded identical, one by one.

An SDXL base and an SDXL refiner have different text sides (the refiner has no
text_encoder), so their combined text fingerprint never matches even when, as in SDXL
1.0, the refiner's VAE and text_encoder_2 are the base's. expertune.json therefore also
records `component_fingerprints`, one hash per part, and the chain shares each part the
refiner has whose hash equals the base's. Records written before that field share all
parts only when their combined `encoder_fingerprints` match, as before.
"""

from __future__ import annotations

from expertune.pipeline.experts import ExpertInfo

PARTS = ("vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2")
RECORD_KEY = "component_fingerprints"


def component_fingerprints(components, *, vae: str | None = None) -> dict[str, str | None]:
    """{part: fingerprint or None when the model lacks it} for models.load.Components.

    `vae` is the VAE's fingerprint when the caller has it already (the cache keys use the
    same hash), so only the text side is hashed here.
    """
    from expertune.data.keys import tokenizer_fingerprint
    from expertune.models.load import fingerprint

    out: dict[str, str | None] = {}
    for part in PARTS:
        value = getattr(components, part, None)
        if value is None:
            out[part] = None
        elif part == "vae" and vae is not None:
            out[part] = vae
        elif part.startswith("tokenizer"):
            out[part] = tokenizer_fingerprint(value)
        else:
            out[part] = fingerprint(value)
    return out


def shared_parts(base: ExpertInfo, refiner: ExpertInfo) -> tuple[str, ...]:
    """The parts of `base` the refiner pipeline can take instead of loading its own."""
    from expertune.models.family import get_family

    has = set(get_family(refiner.family).components)
    wanted = [part for part in PARTS if part in has]
    mine, theirs = _recorded(base), _recorded(refiner)
    if mine is not None and theirs is not None:
        return tuple(p for p in wanted if mine.get(p) is not None and mine.get(p) == theirs.get(p))
    if base.encoders and base.encoders == refiner.encoders:
        return tuple(wanted)
    return ()


def _recorded(expert: ExpertInfo) -> dict | None:
    value = (expert.record or {}).get(RECORD_KEY)
    return value if isinstance(value, dict) else None
