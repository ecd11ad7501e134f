"""`expertune moe`: one config -> (a parent,) K experts (and a baseline) on shared caches,
then OUTPUT_ROOT/moe.json, the chain's manifest (and OUTPUT_ROOT/report.html).

Order: the parent (`parent_steps`) trains first, since every expert starts from it; then
the experts in denoising order, one after another or `--parallel N` at once as separate
processes; then the baseline (`baseline = true`, in the same pool when parallel). The
first run to need them fills the shared cache (latents, text embeddings); every later run
finds every entry there and runs no encoder pass.

A finished run (its record in OUTPUT_ROOT/<name>/expertune.json with the planned band and
steps) is skipped, so an interrupted moe run continues with the same command (plus
`--resume_from_checkpoint latest` for the one that was cut off), and `--only NAME`
trains one run on its own (another machine sharing the cache folder). `--only` never
writes the manifest; a later plain run does, once everything is finished.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from expertune.config.moe import MoePlan
from expertune.errors import ConfigError

log = logging.getLogger(__name__)

MANIFEST = "moe.json"


def run_moe(
    moe: MoePlan,
    only: str | None = None,
    parallel: int = 1,
    relaunch: tuple[str, list[str]] | None = None,  # (config path, flags) for workers
    writes: bool = True,  # False on ranks > 0 of a distributed launch: they only train
) -> Path | None:
    """Train what is not finished yet (or only `only`); write the manifest when all are.

    Under accelerate launch every rank calls this and trains each run together with the
    others (run_training returns on every rank only once the run is published); the
    manifest and the report are written by the process with `writes` alone.
    """
    runs = [c for c in moe.runs() if only is None or c.expert_name == only]
    for cfg in runs:
        if finished(cfg):
            log.info("[moe] %s is finished; skipping it", cfg.expert_name)
    todo = [c for c in runs if not finished(c)]
    _check_parent_ready(moe, todo)
    if moe.parent is not None and moe.parent in todo:
        _train(moe.parent)
        todo.remove(moe.parent)
    if parallel > 1 and len(todo) > 1:
        from expertune.app.moe_parallel import train_in_parallel

        if relaunch is None:
            raise ValueError("--parallel needs the config path and flags to start workers")
        train_in_parallel(moe, todo, parallel, *relaunch)
    else:
        for cfg in todo:
            _train(cfg)
    if only is not None or not writes:
        return None
    missing = [c.expert_name for c in moe.runs() if not finished(c)]
    if missing:
        log.info("[moe] not written yet: %s (still to train: %s)", MANIFEST, ", ".join(missing))
        return None
    path = write_manifest(moe)
    if moe.baseline is not None:
        from expertune.app.moe_report import write_moe_report

        write_moe_report(moe)
    return path


def _train(cfg) -> None:
    from expertune.app.train import train_expert

    lo, hi = cfg.expert_band()
    log.info("[moe] training %s on timesteps %d..%d", cfg.expert_name, lo, hi)
    train_expert(cfg)


def _check_parent_ready(moe: MoePlan, todo: list) -> None:
    """`--only NAME` of an expert split from a parent that is not trained yet: say how."""
    if moe.parent is None or moe.parent in todo or finished(moe.parent):
        return
    waiting = [c.expert_name for c in todo if c.init_from == moe.parent.output_dir]
    if waiting:
        raise ConfigError(
            f"--only {waiting[0]}: it starts from the parent (parent_steps), which is not "
            "trained yet; run the same command with --only parent first"
        )


def finished(cfg) -> bool:
    """Whether the run's folder holds a published pipeline with the planned band and steps."""
    from expertune.records.expert import read_record

    record = read_record(Path(cfg.output_dir))
    if not record or list(record.get("band", ())) != list(cfg.expert_band()):
        return False
    return cfg.max_train_steps is None or record.get("steps") == cfg.max_train_steps


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
                "parent": (record.get("parent") or {}).get("path"),
            }
        )
    first = read_record(Path(moe.experts[0].output_dir)) or {}
    return {
        "format": 1,
        "plan": {"edges": list(moe.plan.edges), "source": moe.source},
        "experts": experts,
        "parameterisation": first.get("parameterisation"),
        "parent": "parent" if moe.parent else None,
        "baseline": "baseline" if moe.baseline else None,
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
