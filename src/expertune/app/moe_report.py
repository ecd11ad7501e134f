"""What the moe report shows, measured: eval loss per band of every expert and of the
baseline on the same latents and noise (app/evaluate.py), each run's training loss, and
the validation prompts rendered through the chain (the router) beside the baseline.

Written after every run is finished (`baseline = true`); `expertune moe` logs and goes on
if it fails, since the trained experts must not be lost to their report.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

REPORT_DIR = "report"


def write_moe_report(moe) -> Path | None:
    """OUTPUT_ROOT/report.html (plots and images under OUTPUT_ROOT/report/), or None."""
    try:
        return _write(moe)
    except Exception:
        log.exception("[moe] report.html could not be written; the experts are intact")
        return None


def _write(moe) -> Path:
    from expertune.app.evaluate import evaluate_models
    from expertune.app.moe import read_manifest
    from expertune.evaluate.moe_report import render_moe_report
    from expertune.evaluate.plots import compare_bands, run_loss_curves
    from expertune.evaluate.records import read_metrics, write_json

    root = moe.output_root
    folder = root / REPORT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    cfg = moe.experts[0]
    experts = [c.output_dir for c in moe.experts]
    result = evaluate_models(experts, moe.baseline.output_dir, cfg, cfg.eval_timesteps)
    write_json(folder / "eval_loss.json", result)
    compare_bands(result, folder / "eval_loss.png")
    curves = {c.expert_name: read_metrics(Path(c.output_dir))[0] for c in moe.runs()}
    run_loss_curves(curves, folder / "loss.png")
    grid, caption, colours = _chain_grid(moe, folder / "chain.png")
    sections = {
        "colour": colours,
        "eval": result,
        "eval_plot": f"{REPORT_DIR}/eval_loss.png",
        "curves": f"{REPORT_DIR}/loss.png",
        "grid": f"{REPORT_DIR}/chain.png" if grid else None,
        "grid_caption": caption,
    }
    path = render_moe_report(root, read_manifest(root), sections)
    log.info("[moe] wrote %s", path)
    return path


def _chain_grid(moe, out: Path) -> tuple[bool, str, dict]:
    """Each validation prompt through the chain and through the baseline, same seed; and
    the prompt-colour accuracy of each side (evaluate/colour_check.py; {} if unmeasurable)."""
    cfg = moe.experts[0]
    prompts = cfg.validation_prompts
    if not prompts:
        return False, "no validation_prompt in [shared]: set one to see the chain's images", {}
    from diffusers import StableDiffusionXLPipeline

    from expertune.evaluate.images import grid
    from expertune.evaluate.prompt_validation import PromptSettings
    from expertune.io import no_progress_bars
    from expertune.pipeline.routed import load_routed_pipeline, router_blockers
    from expertune.pipeline.routed import read_manifest as read_set

    experts = read_set(moe.output_root)
    why = router_blockers(experts)
    if why is not None:
        return False, f"the chain could not be rendered with the router: {why}", {}
    settings = PromptSettings.from_config(cfg, tuple(prompts))
    chain = load_routed_pipeline(experts)
    with no_progress_bars():
        single = StableDiffusionXLPipeline.from_pretrained(moe.baseline.output_dir)
    size = {"height": settings.height, "width": settings.width}
    rows, drawn = [], {"chain": ([], []), "baseline": ([], [])}
    for prompt in prompts:
        ours = chain(**settings.call_args(prompt), **size).images
        theirs = single(**settings.call_args(prompt), **size).images
        for name, images in (("chain", ours), ("baseline", theirs)):
            drawn[name][0].extend(images)
            drawn[name][1].extend([prompt] * len(images))
        rows.append(ours + theirs)
    grid(rows).save(out)
    n = settings.images_per_prompt
    caption = (
        f"rows: {' | '.join(prompts)}; columns: {n} through the chain ({len(moe.experts)} "
        f"experts), then {n} from the baseline; seed {settings.seed}, {settings.steps} steps"
    )
    return True, caption, _colour_accuracy(drawn)


def _colour_accuracy(drawn: dict) -> dict:
    """{side: accuracy} for the sides whose prompts name palette colours."""
    from expertune.evaluate.colour_check import colour_accuracy

    scores = {name: colour_accuracy(*pair) for name, pair in drawn.items()}
    return {name: score for name, score in scores.items() if score is not None}
