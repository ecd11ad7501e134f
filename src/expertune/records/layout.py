"""File names inside an expert's OUTPUT_DIR: the one list both train/ and evaluate/ use."""

from __future__ import annotations

EXPERT_FILE = "expertune.json"  # the expert record (records/expert.py)
SUMMARY_FILE = "run_summary.json"  # totals of the run
METRICS_FILE = "metrics.jsonl"  # one JSON object per optimizer step, eval records beside
RUN_FILE = "run.json"  # the id of the run that owns OUTPUT_DIR's checkpoints
CHECKPOINT_MARKER = "COMPLETE"  # written last into a checkpoint folder
VALIDATION_DIR = "validation"
REPORT_DIR = "report"
