"""What one validation leaves in OUTPUT_DIR/validation/step-N/: every image, a grid per
kind, and validation.json describing them (prompts, scores, timesteps)."""

from __future__ import annotations

from pathlib import Path

from expertune.evaluate.clip_score import summary
from expertune.evaluate.colour_check import check
from expertune.evaluate.images import grid
from expertune.pipeline.chain import save_image


def save_validation(
    folder: Path, step: int, band, prompts: list, dataset: list, clip: dict
) -> dict:
    """Write the images and grids; return the manifest (notes and timing are added later).

    `prompts` are prompt_validation.Rendered, `dataset` dataset_validation.DatasetResult,
    `clip` the scores per kind in the order of the images of that kind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    scores = {kind: iter(values) for kind, values in clip.items()}
    entries = [_prompt_entry(folder, r, scores) for r in prompts]
    entries += [_dataset_entry(folder, i, d, scores) for i, d in enumerate(dataset)]
    return {
        "step": step,
        "band": [band.lo, band.hi],
        "images": entries,
        "grids": _grids(folder, prompts, dataset),
        "clip": {kind: summary(values) for kind, values in clip.items()},
        "psnr": _psnr(dataset),
        "colour": colour_accuracy_by_kind(prompts, dataset),
    }


def colour_accuracy_by_kind(prompts: list, dataset: list) -> dict:
    """Prompt-colour accuracy (evaluate/colour_check.py) per kind of image, where prompts
    name a shape domain's colours: {kind: {"accuracy", "correct", "count"}}."""
    groups: dict[str, list] = {}
    for r in prompts:
        groups.setdefault(r.kind, []).append(check(r.image, r.prompt))
    if dataset:
        groups["dataset"] = [check(d.refined, d.caption) for d in dataset]
    out = {}
    for kind, readings in groups.items():
        readings = [r for r in readings if r is not None]
        if readings:
            correct = sum(r.correct for r in readings)
            out[kind] = {
                "accuracy": correct / len(readings),
                "correct": correct,
                "count": len(readings),
            }
    return out


def _prompt_entry(folder: Path, r, scores: dict) -> dict:
    suffix = "-chain" if r.kind == "chain" else ""
    if getattr(r, "size", None):  # several --validation_resolution sizes: WxH in the name
        suffix = f"-{r.size[1]}x{r.size[0]}{suffix}"
    file = f"prompt-{r.prompt_index:02d}-{r.sample}{suffix}.png"
    save_image(r.image, folder / file)
    entry = {"file": file, "kind": r.kind, "prompt": r.prompt}
    if r.kind in scores:
        entry["clip_score"] = next(scores[r.kind])
    return entry


def _dataset_entry(folder: Path, index: int, d, scores: dict) -> dict:
    file = f"dataset-{index:02d}.png"
    save_image(d.panel, folder / file)
    entry = {
        "file": file,
        "kind": "dataset",
        "prompt": d.caption,
        "source": d.name,
        "psnr": d.psnr,
        "start_timestep": d.timesteps[0],
        "end_timestep": d.timesteps[-1],
    }
    if d.chain_psnr is not None:
        entry["chain_psnr"] = d.chain_psnr
    if "dataset" in scores:
        entry["clip_score"] = next(scores["dataset"])
    return entry


def _psnr(dataset: list) -> dict:
    if not dataset:
        return {}
    out = {"dataset": summary([d.psnr for d in dataset])}
    chained = [d.chain_psnr for d in dataset if d.chain_psnr is not None]
    return out | ({"chain": summary(chained)} if chained else {})


def _grids(folder: Path, prompts: list, dataset: list) -> dict[str, str]:
    """prompts.png (a row per prompt: expert images, then chain images), dataset.png."""
    grids = {}
    if prompts:
        rows: dict[int, list] = {}
        for r in sorted(prompts, key=lambda r: (r.prompt_index, r.kind != "expert", r.sample)):
            rows.setdefault(r.prompt_index, []).append(r.image)
        save_image(grid(list(rows.values())), folder / "prompts.png")
        grids["prompts"] = "prompts.png"
    if dataset:
        save_image(grid([[d.panel] for d in dataset]), folder / "dataset.png")
        grids["dataset"] = "dataset.png"
    return grids
