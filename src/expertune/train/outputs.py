"""What a finished run leaves in OUTPUT_DIR besides checkpoints.

- a complete diffusers SDXL pipeline (model_index.json + component folders), whose
  scheduler config carries the trained parameterisation, published atomically (publish.py);
- `expertune.json`: the expert's role, band, strength and parameterisation;
- `metrics.jsonl`: one JSON object per optimizer step;
- `run_summary.json`: totals of the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from expertune.records.layout import EXPERT_FILE, METRICS_FILE, SUMMARY_FILE
from expertune.train.storage import write_json_atomic

__all__ = [
    "EXPERT_FILE",
    "METRICS_FILE",
    "SUMMARY_FILE",
    "MetricsLog",
    "read_expert_file",
    "write_json_atomic",
]


def read_expert_file(model_dir: Path) -> dict | None:
    """The expertune.json of a saved expert, or None for a model expertune did not train."""
    path = Path(model_dir) / EXPERT_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


class MetricsLog:
    """Appends per-step records to metrics.jsonl and TensorBoard, in batches.

    Records arrive with the loss still on the device; `flush` converts them with one
    host sync for the whole batch of steps, so the hot path never waits on the device.
    """

    def __init__(self, output_dir: Path, tensorboard: bool, writes: bool = True) -> None:
        """`writes`: False on every process but the main one, which alone writes files
        (the others still flush, so every rank sees the same per-step values)."""
        self.path = output_dir / METRICS_FILE
        self.writes = writes
        self._pending: list[dict] = []
        self._writer = None
        self.tracker = None  # train/wandb_log.WandbTracker with --report_to=wandb
        if writes:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard and writes:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(output_dir / "logs"))

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (written after the checkpoint a run resumes from)."""
        if not self.writes or not self.path.is_file():
            return
        keep = [
            line
            for line in self.path.read_text().splitlines()
            if line.strip() and json.loads(line)["step"] <= step
        ]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text("".join(f"{line}\n" for line in keep))
        os.replace(tmp, self.path)

    def add(self, record: dict) -> None:
        self._pending.append(record)

    def pending(self) -> list[dict]:
        """The records not flushed yet (the loop stamps the synced throughput on them)."""
        return self._pending

    def flush(self) -> list[dict]:
        """Write pending records; return them with every tensor value as a Python number.

        One host sync per flush: each tensor-valued key (loss, grad norm, the finite flag)
        is stacked and converted together.
        """
        if not self._pending:
            return []
        import torch

        flushed = [dict(r) for r in self._pending]
        for key in [k for k, v in flushed[0].items() if isinstance(v, torch.Tensor)]:
            values = torch.stack([r[key].detach().float() for r in flushed]).tolist()
            for record, value in zip(flushed, values, strict=True):
                record[key] = bool(value) if record[key].dtype == torch.bool else value
        if not self.writes:
            self._pending.clear()
            return flushed
        with self.path.open("a") as fh:
            for record in flushed:
                fh.write(json.dumps(record) + "\n")
                if self._writer is not None:
                    for key in ("loss", "lr", "samples_per_s"):
                        self._writer.add_scalar(f"train/{key}", record[key], record["step"])
                if self.tracker is not None:
                    self.tracker.log(record)
        self._pending.clear()
        return flushed

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None
