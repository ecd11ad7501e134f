"""`expertune moe`: one config -> K experts trained in denoising order on shared caches,
then OUTPUT_ROOT/moe.json, the chain's manifest.

The first expert fills the shared cache (latents, text embeddings); every later expert
finds every entry there and runs no encoder pass. A finished expert (its record in
OUTPUT_ROOT/<name>/expertune.json with the planned band) is skipped, so an interrupted
run continues with the same command, and `--only NAME` trains one expert on its own
(another machine sharing the cache folder); a later plain run writes the manifest.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from expertune.config.moe import MoePlan

log = logging.getLogger(__name__)

MANIFEST = "moe.json"


def run_moe(moe: MoePlan, only: str | None = None) -> Path | None:
    """Train what is not finished yet (or only `only`); write the manifest when all are."""
    from expertune.app.train import train_expert

    for cfg in moe.experts:
        if only is not None and cfg.expert_name != only:
            continue
        if _finished(cfg) and not cfg.resume_from_checkpoint:
            log.info("[moe] %s is finished; skipping it", cfg.expert_name)
            continue
        lo, hi = cfg.expert_band()
        log.info("[moe] training %s on timesteps %d..%d", cfg.expert_name, lo, hi)
        train_expert(cfg)
    if not all(_finished(cfg) for cfg in moe.experts):
        missing = [c.expert_name for c in moe.experts if not _finished(c)]
        log.info("[moe] not written yet: %s (still to train: %s)", MANIFEST, ", ".join(missing))
        return None
    return write_manifest(moe)


def _finished(cfg) -> bool:
    """Whether the expert's folder holds a published pipeline recording the planned band."""
    from expertune.records.expert import read_record

    record = read_record(Path(cfg.output_dir))
    return bool(record) and list(record.get("band", ())) == list(cfg.expert_band())


def manifest(moe: MoePlan) -> dict:
    """The chain's manifest: experts in denoising order with band, path and handover."""
    from expertune.records.expert import read_record

    experts = []
    for position, (name, cfg) in enumerate(zip(moe.names, moe.experts, strict=True)):
        band = moe.plan.bands[moe.band_index(position)]
        record = read_record(Path(cfg.output_dir)) or {}
        experts.append(
            {
                "name": name,
                "band": [band.lo, band.hi],
                "path": name,
                # denoising_end of this expert (where the next one takes over); 1.0 = last
                "handover": round(1 - band.lo / moe.plan.num_train_timesteps, 6),
                "model_type": record.get("model_type"),
                "steps": record.get("steps"),
            }
        )
    first = read_record(Path(moe.experts[0].output_dir)) or {}
    return {
        "format": 1,
        "plan": {"edges": list(moe.plan.edges), "source": moe.source},
        "experts": experts,
        "parameterisation": first.get("parameterisation"),
    }


def write_manifest(moe: MoePlan) -> Path:
    """OUTPUT_ROOT/moe.json, written beside and renamed into place."""
    from expertune.train.storage import write_json_atomic

    path = moe.output_root / MANIFEST
    write_json_atomic(path, manifest(moe))
    log.info("[moe] wrote %s", path)
    return path


def read_manifest(root: Path) -> dict:
    return json.loads((Path(root) / MANIFEST).read_text())
