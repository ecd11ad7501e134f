"""`expertune evaluate --experts DIR [DIR...] [--baseline DIR] --data CONFIG`.

Stable eval loss per band: each expert on its own band (from its expertune.json), and
the baseline single model on every expert's band, at the same timesteps, on the same
eval samples with the same fixed noise (eval_loss.EVAL_SEED). This is how a user sees
whether splitting the schedule paid: a lower expert loss than the baseline's on a band.
Writes eval_loss.json and eval_loss.png to --out and prints a table.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from expertune.evaluate.eval_loss import EVAL_SEED, EvalLoss, eval_loss, eval_timesteps
from expertune.schedule.bands import Band
from expertune.schedule.noise import Parameterisation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Model:
    """A model folder to evaluate and what it says about itself."""

    label: str
    path: Path
    band: Band
    param: Parameterisation

    @classmethod
    def read(cls, path: str | Path, what: str) -> Model:
        from expertune.pipeline.experts import read_expert

        info = read_expert(path, what)
        record = info.record or {}
        sched = Path(path) / "scheduler" / "scheduler_config.json"
        T = record.get("num_train_timesteps") or _train_timesteps(sched)
        lo, hi = record.get("band") or (0, T - 1)
        role = record.get("role", "single")
        return cls(f"{Path(path).name} ({role})", Path(path), Band(lo, hi), info.parameterisation)


def _train_timesteps(scheduler_config: Path) -> int:
    import json

    if scheduler_config.is_file():
        return int(json.loads(scheduler_config.read_text()).get("num_train_timesteps", 1000))
    return 1000


def measure(model: Model, cfg, timesteps: list[list[int]]) -> tuple[list[EvalLoss], dict]:
    """Eval losses of `model` at each list of timesteps; plus what the eval set was."""
    from accelerate import Accelerator

    from expertune.evaluate.eval_set import eval_set_for
    from expertune.models.family import detect_family
    from expertune.models.load import load_components, read_model_index
    from expertune.schedule.noise import training_scheduler
    from expertune.train.setup import setup_data

    family = detect_family(read_model_index(model.path), where=f"{model.path}/model_index.json")
    components = load_components(str(model.path), family=family)
    accelerator = Accelerator()
    data = setup_data(cfg, components, accelerator)
    samples = eval_set_for(data, cfg.eval_split)
    scheduler = training_scheduler(components.scheduler_config, model.param)
    unet = components.unet.to(accelerator.device).eval()
    kind = model.param.prediction_type
    losses = [
        eval_loss(unet, scheduler, samples.dataset, ts, kind, cfg.train_batch_size)
        for ts in timesteps
    ]
    about = {"source": samples.source, "samples": len(samples), "vae": data.fingerprints["vae"]}
    return losses, about


def evaluate_models(experts: list[str], baseline: str | None, cfg, count: int) -> dict:
    """Every expert on its band and the baseline on all of them; the JSON written to --out."""
    models = [Model.read(p, "--experts") for p in experts]
    base = Model.read(baseline, "--baseline") if baseline else None
    timesteps = [eval_timesteps(m.band, count) for m in models]
    rows, abouts = [], []
    for model, ts in zip(models, timesteps, strict=True):
        (loss,), about = measure(model, cfg, [ts])
        rows.append(_row(model, loss))
        abouts.append(about)
    if base is not None:
        losses, about = measure(base, cfg, timesteps)
        abouts.append(about)
        for row, loss in zip(rows, losses, strict=True):
            row |= {"baseline_losses": list(loss.losses), "baseline_loss": loss.mean}
    everyone = [*models, *([base] if base else [])]
    return {
        "bands": rows,
        "baseline": str(base.path) if base else None,
        "eval_set": abouts[0]["source"],
        "samples": abouts[0]["samples"],
        "noise_seed": EVAL_SEED,
        "timesteps_per_band": count,
        "models": [
            {
                "label": m.label,
                "path": str(m.path),
                "band": [m.band.lo, m.band.hi],
                "parameterisation": m.param.as_dict(),
            }
            for m in everyone
        ],
        "notes": _notes(everyone, abouts),
    }


def _row(model: Model, loss: EvalLoss) -> dict:
    return {
        "band": [model.band.lo, model.band.hi],
        "expert": model.label,
        "path": str(model.path),
        "timesteps": list(loss.timesteps),
        "expert_losses": list(loss.losses),
        "expert_loss": loss.mean,
    }


def _notes(models: list[Model], abouts: list[dict]) -> list[str]:
    notes = []
    if len({a["vae"] for a in abouts}) > 1:
        notes.append("the models have different VAEs, so they saw different latents")
    params = {str(m.param.as_dict()) for m in models}
    if len(params) > 1:
        notes.append(
            "the models differ in parameterisation (prediction type, zero-terminal SNR or "
            "spacing): each loss is measured against its own target, so compare with care"
        )
    return notes


def table(result: dict) -> str:
    """The result as aligned text: one line per band."""
    head = f"{'band':<12}  {'expert':<28}  {'expert loss':>11}"
    has_base = result["baseline"] is not None
    head += f"  {'baseline loss':>13}  {'change':>7}" if has_base else ""
    lines = [head]
    for row in result["bands"]:
        line = f"{row['band']!s:<12}  {row['expert'][:28]:<28}  {row['expert_loss']:>11.5f}"
        if has_base:
            change = row["expert_loss"] / row["baseline_loss"] - 1
            line += f"  {row['baseline_loss']:>13.5f}  {change:>+7.1%}"
        lines.append(line)
    lines.append(f"{result['samples']} samples ({result['eval_set']}), noise seed {EVAL_SEED}")
    return "\n".join([*lines, *(f"note: {n}" for n in result["notes"])])


def cmd_evaluate(args) -> int:
    """The `expertune evaluate` subcommand."""
    from expertune.config import load_config
    from expertune.evaluate.plots import compare_bands
    from expertune.evaluate.records import write_json

    cfg = load_config(args.data)
    result = evaluate_models(args.experts, args.baseline, cfg, args.timesteps or cfg.eval_timesteps)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval_loss.json", result)
    compare_bands(result, out / "eval_loss.png")
    print(table(result))
    print(f"wrote {out / 'eval_loss.json'} and {out / 'eval_loss.png'}")
    return 0
