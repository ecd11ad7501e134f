"""`make bench`: run every benchmark, one after another, and rewrite docs/benchmarks.md.

Each benchmark prints its ratio as its last line; this collects those lines, the wall
time of each and the machine, so the page says what was measured where and when.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = (  # (script, what it compares)
    ("train_step.py", "training loop samples/s vs a bare PyTorch loop (trainer overhead)"),
    ("train_memory.py", "peak RSS of expertune train vs the bare loop"),
    ("cache_build.py", "cache build vs a bare encode loop"),
    ("generate.py", "router generation vs one plain model"),
)


def run(script: str) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    last = lines[-1] if done.returncode == 0 and lines else f"failed (exit {done.returncode})"
    return last, time.perf_counter() - start


def main() -> None:
    import torch

    rows = []
    for script, what in BENCHMARKS:
        last, seconds = run(script)
        print(f"{script}: {last} ({seconds:.0f}s)", flush=True)
        rows.append(f"| `{script}` | {what} | {last} | {seconds:.0f} |")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    page = "\n".join(
        [
            "# Benchmarks",
            "",
            f"Written by `make bench` on {time.strftime('%Y-%m-%d %H:%M')} ({machine}).",
            "Each benchmark measures both arms side by side in one run and prints one",
            "ratio last; on a shared machine rerun before trusting a small difference.",
            "",
            "| benchmark | compares | result (last line) | seconds |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )
    out = HERE.parent / "docs" / "benchmarks.md"
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(page)
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
