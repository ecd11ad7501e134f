"""OUTPUT_ROOT/report.html of a moe run: the K-band plan, every run's loss curve, eval loss
per band for each expert against the baseline (same latents, same noise), and prompts
rendered through the whole chain beside the baseline.

The page is rendered from files under OUTPUT_ROOT/report/ that app/moe_report.py writes
(eval_loss.json, the plots, chain.png), inlined so it opens offline on its own.
"""

from __future__ import annotations

import time
from html import escape
from pathlib import Path

from expertune.evaluate.band_diagram import band_svg
from expertune.evaluate.report import STYLE, _image, _table  # one look for every report

REPORT_FILE = "report.html"


def render_moe_report(root: Path, manifest: dict, sections: dict) -> Path:
    """Write OUTPUT_ROOT/report.html. `sections`: `eval` (evaluate's result), `curves`,
    `eval_plot` and `grid` (paths relative to root, or None), `grid_caption`, `notes`."""
    edges = manifest["plan"]["edges"]
    names = [e["name"] for e in reversed(manifest["experts"])]  # ascending bands
    experts = [
        (e["name"], e["band"], e["handover"], e["model_type"], e["steps"], e["parent"])
        for e in manifest["experts"]
    ]
    head = ("expert", "band", "denoising_end", "model", "steps", "parent")
    parts = [
        "<h2>Band plan</h2>",
        band_svg(None, edges[-1], edges, names),
        _table(experts, head),
        *(f"<p class=note>{escape(n)}</p>" for n in sections.get("notes", [])),
        _loss(root, sections.get("curves")),
        _eval(root, sections.get("eval"), sections.get("eval_plot")),
        _grid(root, sections.get("grid"), sections.get("grid_caption", "")),
        _colour(sections.get("colour") or {}),
    ]
    title = f"expertune moe report: {root.resolve().name}"
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>"
        f"<p class=muted>{escape(str(root.resolve()))} · written "
        f"{time.strftime('%Y-%m-%d %H:%M:%S')}</p>{''.join(parts)}</body></html>\n"
    )
    from expertune.io import write_text_atomic

    path = root / REPORT_FILE
    write_text_atomic(path, page)
    return path


def _loss(root: Path, rel: str | None) -> str:
    if rel is None:
        return "<h2>Training loss</h2><p class=muted>no training records</p>"
    return f"<h2>Training loss</h2>{_image(root, rel, 'training loss of every run')}"


def _eval(root: Path, result: dict | None, rel: str | None) -> str:
    if not result:
        return "<h2>Eval loss per band</h2><p class=muted>not measured</p>"
    rows = []
    for row in result["bands"]:
        base = row.get("baseline_loss")
        change = f"{row['expert_loss'] / base - 1:+.1%}" if base else None
        rows.append((row["expert"], row["band"], row["expert_loss"], base, change))
    head = ("expert", "band", "expert loss", "baseline loss", "expert vs baseline")
    about = (
        f"{result['samples']} samples ({result['eval_set']}), {result['timesteps_per_band']} "
        f"timesteps per band, noise seed {result['noise_seed']}: every model sees the same "
        "latents and the same noise; lower is better"
    )
    plot = _image(root, rel, "eval loss per band") if rel else ""
    notes = "".join(f"<p class=note>{escape(n)}</p>" for n in result.get("notes", []))
    return f"<h2>Eval loss per band</h2>{plot}{_table(rows, head)}<p>{escape(about)}</p>{notes}"


def _grid(root: Path, rel: str | None, caption: str) -> str:
    if rel is None:
        return f"<h2>Through the chain</h2><p class=muted>{escape(caption)}</p>"
    img = _image(root, rel, "prompts through the chain and the baseline")
    figure = f"<figure>{img}<figcaption>{escape(caption)}</figcaption></figure>"
    return f"<h2>Through the chain</h2>{figure}"


def _colour(accuracy: dict) -> str:
    """Prompt-colour accuracy of the chain's and the baseline's images, when measurable."""
    if not accuracy:
        return ""
    rows = [(name, f"{value:.0%}") for name, value in accuracy.items()]
    note = (
        "<p class=muted>share of images whose centre and border colours are the ones the "
        "prompt names (evaluate/colour_check.py)</p>"
    )
    return f"<h2>Prompt-colour accuracy</h2>{note}{_table(rows, ('images', 'accuracy'))}"
