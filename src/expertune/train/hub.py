"""--push_to_hub / --hub_model_id / --push_checkpoints_to_hub with huggingface_hub's HfApi.

- Before training (preflight) `check_hub` asks the hub who the token belongs to, with a
  short deadline: no token, offline mode, or no answer is one ConfigError line (exit 2)
  before any work, not a failure after the last step.
- After the expert is published, `push_expert` writes a model card (README.md: the
  band, the parameterisation, the base model) and uploads, in one commit, the current
  pipeline version (the real files OUTPUT_DIR's links point to: pipeline,
  expertune.json, adapter) with README.md, run_summary.json and report.html; never the
  checkpoints, logs or W&B files.
- With --push_checkpoints_to_hub each checkpoint folder is uploaded as `checkpoint-N/`.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from expertune.errors import ConfigError

log = logging.getLogger(__name__)


def _api():
    from huggingface_hub import HfApi, constants

    return HfApi(endpoint=constants.ENDPOINT)


def check_hub(cfg, timeout: float = 10.0) -> None:
    """Raise one ConfigError line unless the hub answers and the token is valid."""
    if not getattr(cfg, "push_to_hub", False):
        return
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise ConfigError("--push_to_hub: HF_HUB_OFFLINE is set; unset it or drop --push_to_hub")
    answer: dict = {}

    def ask() -> None:
        try:
            answer["who"] = _api().whoami()
        except Exception as err:  # network, auth: all mean "cannot push"
            answer["error"] = err

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    where = constants.ENDPOINT
    if "who" in answer:
        log.info("hub: %s as %s, pushing to %s", where, answer["who"].get("name"), cfg.hub_model_id)
        return
    err = answer.get("error")
    if err is None:
        why = f"no answer in {timeout:g}s"
    elif type(err).__name__ == "LocalTokenNotFoundError":
        why = "no token: run `hf auth login` or set HF_TOKEN"
    else:
        why = f"{type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''}"
    raise ConfigError(
        f"--push_to_hub: the hub at {where} cannot be used ({why}); fix it or drop --push_to_hub"
    )


def model_card(cfg, record: dict) -> str:
    """README.md for the hub: what the expert is, its band and its parameterisation."""
    lo, hi = record["band"]
    param = record.get("parameterisation", {})
    param_text = ", ".join(f"{k}={v}" for k, v in param.items())
    lines = [
        "---",
        "library_name: diffusers",
        f"base_model: {cfg.pretrained_model_name_or_path}",
        "tags: [expertune, timestep-experts, stable-diffusion-xl]",
        "---",
        f"# {cfg.hub_model_id}",
        "",
        f"A timestep expert trained with expertune {record.get('expertune_version', '')}: "
        f"the **{record['role']}** expert of a timestep mixture of experts.",
        "",
        f"- band: timesteps {lo}..{hi} of {record['num_train_timesteps']} (inclusive)",
        f"- parameterisation: {param_text}",
        f"- model family: {record['model_family']}, model type: {record['model_type']}",
        f"- base model: {cfg.pretrained_model_name_or_path}",
        f"- steps: {record['steps']}; weights: {record.get('weights', 'trained')}",
        "",
        "Load it as a diffusers pipeline; chain it with its sibling expert at the band edge "
        "(`expertune generate`), using the same parameterisation.",
    ]
    return "\n".join(lines) + "\n"


def published_files(output_dir: Path) -> dict[str, Path]:
    """Repo path -> file for the published expert: the current pipeline version (the
    folder OUTPUT_DIR's links point into), README.md and the run's summary and report."""
    from expertune.train.publish import POINTER, STORE

    version = (output_dir / STORE / POINTER).resolve()
    files = {str(p.relative_to(version)): p for p in sorted(version.rglob("*")) if p.is_file()}
    for extra in ("README.md", "run_summary.json", "report.html"):
        if (output_dir / extra).is_file():
            files[extra] = output_dir / extra
    return files


def push_expert(cfg, output_dir: Path, record: dict) -> None:
    """Write README.md and upload the published expert to --hub_model_id in one commit."""
    from huggingface_hub import CommitOperationAdd

    _write_atomic(output_dir / "README.md", model_card(cfg, record))
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
        for name, path in published_files(output_dir).items()
    ]
    api = _api()
    api.create_repo(cfg.hub_model_id, exist_ok=True)
    api.create_commit(
        repo_id=cfg.hub_model_id,
        operations=operations,
        commit_message=f"expertune: {record['role']} expert, band {record['band']}",
    )
    log.info("pushed the expert (%d files) to %s", len(operations), cfg.hub_model_id)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def push_checkpoint(cfg, path: Path) -> None:
    """Upload one checkpoint folder as `checkpoint-N/` (--push_checkpoints_to_hub)."""
    api = _api()
    api.create_repo(cfg.hub_model_id, exist_ok=True)
    api.upload_folder(
        repo_id=cfg.hub_model_id,
        folder_path=str(path),
        path_in_repo=path.name,
        commit_message=f"expertune: {path.name}",
    )
    log.info("pushed %s to %s", path.name, cfg.hub_model_id)
