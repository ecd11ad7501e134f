"""What evaluation writes and the report reads back, in OUTPUT_DIR.

- `metrics.jsonl`: training records (one per step, no "kind") and eval-loss records
  `{"kind": "eval", "step", "range": "band"|"full", "band", "eval_loss", "timesteps",
  "losses", "samples"}` appended beside them; readers pick by "kind".
- `validation/step-N/validation.json`: one manifest per validation (images, scores, notes).
- `report/config.json`: the run's flags, band and role, for `expertune report`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from expertune.records.layout import METRICS_FILE, VALIDATION_DIR

EVAL_KIND = "eval"
MANIFEST = "validation.json"
RUN_CONFIG = "config.json"


def append_metrics(output_dir: Path, records: list[dict]) -> None:
    """Append records to metrics.jsonl (the training log keeps its own buffered writes)."""
    with (Path(output_dir) / METRICS_FILE).open("a") as fh:
        for record in records:
            fh.write(json.dumps(record) + "\n")


def read_metrics(output_dir: Path) -> tuple[list[dict], list[dict]]:
    """(training records, eval records) of metrics.jsonl; ([], []) when there is none."""
    path = Path(output_dir) / METRICS_FILE
    if not path.is_file():
        return [], []
    train, evals = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("kind") == EVAL_KIND:
            evals.append(record)
        elif "kind" not in record:
            train.append(record)
    return sorted(train, key=lambda r: r["step"]), sorted(evals, key=lambda r: r["step"])


def step_dir(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / VALIDATION_DIR / f"step-{step}"


def write_json(path: Path, data: object) -> None:
    """Write JSON beside `path`, then rename it into place (readers never see half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def write_manifest(folder: Path, manifest: dict) -> None:
    write_json(folder / MANIFEST, manifest)


def read_manifests(output_dir: Path) -> list[dict]:
    """Every validation manifest, by step; each gets "dir" (relative to OUTPUT_DIR)."""
    root = Path(output_dir) / VALIDATION_DIR
    found = []
    for path in root.glob(f"step-*/{MANIFEST}") if root.is_dir() else []:
        manifest = json.loads(path.read_text())
        manifest["dir"] = path.parent.relative_to(output_dir).as_posix()
        found.append(manifest)
    return sorted(found, key=lambda m: m["step"])


def read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None
