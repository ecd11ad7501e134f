"""--report_to=wandb: training metrics to Weights & Biases, offline when it cannot reach it.

SimpleTuner's `tracker_project_name` / `tracker_run_name` name the project and run. The
run id is expertune's run id, so a resumed run continues the same W&B run. Mode:
online when an API key is configured and api.wandb.ai answers within a second or two;
otherwise offline, with the files under OUTPUT_DIR/wandb and one log line saying so
(`wandb sync OUTPUT_DIR/wandb/offline-run-*` uploads them later). `WANDB_MODE` set by
the user wins.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from expertune.errors import ConfigError

log = logging.getLogger(__name__)

HOST = ("api.wandb.ai", 443)


def check_wandb(cfg) -> None:
    """Preflight: the package is there when --report_to=wandb."""
    if getattr(cfg, "report_to", None) != "wandb":
        return
    import importlib.util

    if importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            "--report_to=wandb needs the wandb package: pip install 'expertune[wandb]'"
        )


def choose_mode(timeout: float = 2.0) -> tuple[str, str]:
    """("online" | "offline", why) for this machine."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"], "WANDB_MODE is set"
    if not _has_key():
        return "offline", "no W&B API key is configured"
    try:
        socket.create_connection(HOST, timeout=timeout).close()
    except OSError:
        return "offline", f"{HOST[0]} cannot be reached"
    return "online", "API key and network present"


def _has_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


class WandbTracker:
    """One W&B run; `log(record)` for each flushed metrics record."""

    def __init__(self, cfg, output_dir: Path, run_id: str) -> None:
        import wandb

        mode, why = choose_mode()
        folder = Path(output_dir)
        if mode == "offline":
            log.info(
                "wandb: %s, logging offline to %s (upload later with `wandb sync`)",
                why,
                folder / "wandb",
            )
        self.run = wandb.init(
            project=cfg.tracker_project_name,
            name=cfg.tracker_run_name,
            id=run_id,
            resume="allow",
            dir=str(folder),
            mode=mode,
            config=cfg.as_flags(),
        )
        self.mode = mode

    def log(self, record: dict) -> None:
        keys = ("loss", "lr", "samples_per_s", "grad_norm", "timestep_min", "timestep_max")
        values = {f"train/{k}": record[k] for k in keys if k in record}
        self.run.log(values, step=record["step"])

    def close(self) -> None:
        self.run.finish()


def open_tracker(cfg, output_dir: Path, run_id: str) -> WandbTracker | None:
    """A WandbTracker with --report_to=wandb (main process only), else None."""
    if getattr(cfg, "report_to", None) != "wandb":
        return None
    return WandbTracker(cfg, output_dir, run_id)
