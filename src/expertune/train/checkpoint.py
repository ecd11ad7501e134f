"""Checkpoints that are complete or absent, and `latest` = the newest one that loads.

    checkpoint-STEP/
      model.safetensors   the trainable weights, whole (gathered from every rank first
                          when FSDP or ZeRO-3 shards them)
      optimizer.pt        optimizer + lr-scheduler state (tensors and numbers; read back
                          with torch.load(weights_only=True)); one optimizer state per
                          rank when FSDP or DeepSpeed shards it
      rng.safetensors     torch generator states, one set per process rank
      rng.json            Python's and numpy's generator states, per rank
      state.json          LoopState: step, data position, epoch, skipped steps, run id
      ema.safetensors     EMA weights, only with --use_ema (train/ema.py)
      COMPLETE            written last: every file's size and sha256

Everything is written into `.checkpoint-STEP.tmp/`, fsynced, sealed with COMPLETE and
renamed into place, so a crash leaves either the whole checkpoint or a hidden leftover
that nothing reads. A checkpoint whose files do not match COMPLETE is never resumed
from; `latest` skips it with a warning and takes the next older one.

`run.json` names the run that OUTPUT_DIR belongs to. A fresh run over an old OUTPUT_DIR
claims it when training starts, so `latest` (and rotation) never pick up a checkpoint
that an earlier, different run left behind.

Several processes: every rank takes part in the gathering (`gather_weights`,
`gather_optimizer`: collectives under FSDP and DeepSpeed), only rank 0 writes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from expertune.errors import ConfigError
from expertune.records.checkpoints import (
    checkpoint_dirs,
    current_run,
    run_checkpoints,
    unfinished_dirs,
)
from expertune.records.layout import CHECKPOINT_MARKER as MARKER
from expertune.records.layout import RUN_FILE
from expertune.train import rng as rng_io
from expertune.train.storage import (
    fsync_dir,
    fsync_tree,
    remove_tree,
    saving,
    sha256_files,
    write_json_atomic,
)

log = logging.getLogger(__name__)

FILES = ("model.safetensors", "optimizer.pt", "rng.safetensors", "rng.json", "state.json")
_LEFTOVER = re.compile(r"^\.checkpoint-\d+\.(tmp|old|deleting)$")


class CorruptCheckpoint(Exception):
    """A sealed checkpoint whose files are missing or differ from its COMPLETE manifest."""


@dataclass
class LoopState:
    """Counters a resumed run must continue from."""

    step: int = 0
    position: int = 0  # samples consumed from the data order, all processes together
    epoch: int = 0
    skipped_steps: int = 0  # non-finite steps skipped under --skip_nonfinite_steps
    run_id: str = ""  # the run that wrote it ("" for checkpoints older than run ids)
    data_fingerprint: str = ""  # what decided the batch order (TrainingSet.fingerprint)
    # What the weights were trained for; a resume that changes them is refused in
    # preflight (resume_fit.py). Empty in checkpoints older than these fields.
    band: list[int] | None = None  # [lo, hi] timesteps, inclusive
    parameterisation: dict | None = None  # schedule.noise.Parameterisation.as_dict()
    global_batch: int = 0  # samples per micro-step, all processes together

    @classmethod
    def from_json(cls, text: str) -> LoopState:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# ------------------------------------------------------------------ finding
def verify(path: Path) -> LoopState:
    """The checkpoint's LoopState if every file matches its manifest; else CorruptCheckpoint."""
    try:
        files = json.loads((path / MARKER).read_text())["files"]
        listed = set(files)
    except (OSError, ValueError, KeyError, TypeError):
        raise CorruptCheckpoint("its COMPLETE manifest is unreadable") from None
    if missing := sorted(set(FILES) - listed):
        raise CorruptCheckpoint(f"its manifest does not list {', '.join(missing)}")
    for name in sorted(listed):
        size = (path / name).stat().st_size if (path / name).is_file() else None
        if size != files[name]["bytes"]:
            what = "is missing" if size is None else f"has {size} bytes, not {files[name]['bytes']}"
            raise CorruptCheckpoint(f"{name} {what}")
    actual = sha256_files(path, sorted(listed))
    for name in sorted(listed):
        if actual[name]["sha256"] != files[name]["sha256"]:
            raise CorruptCheckpoint(f"{name} does not match its checksum")
    try:
        return LoopState.from_json((path / "state.json").read_text())
    except (ValueError, TypeError):
        raise CorruptCheckpoint("state.json is unreadable") from None


def claim_run(output_dir: Path, run_id: str) -> None:
    """Record that OUTPUT_DIR now belongs to `run_id` (a fresh run, or a resumed one)."""
    if current_run(output_dir) != run_id:
        write_json_atomic(output_dir / RUN_FILE, {"run_id": run_id})


def latest_loadable(output_dir: Path) -> Path:
    """The newest checkpoint of OUTPUT_DIR's run whose files verify; corrupt ones are skipped."""
    ours = run_checkpoints(output_dir, current_run(output_dir))
    corrupt = []
    unfinished = [p.name for p in unfinished_dirs(output_dir)]
    for path in reversed(ours):
        try:
            verify(path)
        except CorruptCheckpoint as why:
            corrupt.append(f"{path.name} ({why})")
            continue
        if corrupt:
            log.warning("resuming from %s; skipped corrupt %s", path.name, ", ".join(corrupt))
        newer = [n for n in unfinished if int(n.split("-")[1]) > int(path.name.split("-")[1])]
        if newer:
            log.warning(
                "resuming from %s; %s %s no COMPLETE marker (a save was interrupted) and "
                "cannot be resumed",
                path.name,
                ", ".join(newer),
                "has" if len(newer) == 1 else "have",
            )
        return path
    notes = [f"corrupt: {', '.join(corrupt)}"] if corrupt else []
    if unfinished:
        notes.append(f"without COMPLETE marker (unfinished saves): {', '.join(unfinished)}")
    if ignored := len(checkpoint_dirs(output_dir)) - len(ours):
        notes.append(f"{ignored} checkpoint(s) of an earlier run ignored, resume one by name")
    detail = f" ({'; '.join(notes)})" if notes else ""
    raise ConfigError(
        f"--resume_from_checkpoint latest: no complete checkpoint in {output_dir}{detail}; "
        "drop the flag to start fresh"
    )


def resolve_resume(output_dir: Path, resume_from: str) -> Path | None:
    """Map `--resume_from_checkpoint` (latest, a name, or a path) to a verified checkpoint.

    `latest` in an OUTPUT_DIR without any checkpoint folder (sealed or not) is a first run (as in
    SimpleTuner, whose example configs all set it): None, and the log says so. Folders
    that exist but none loads are still an error (see latest_loadable).
    """
    if resume_from == "latest":
        if not (checkpoint_dirs(output_dir) or unfinished_dirs(output_dir)):
            log.info(
                "--resume_from_checkpoint latest: no checkpoint in %s yet, starting fresh",
                output_dir,
            )
            return None
        return latest_loadable(output_dir)
    path = Path(resume_from)
    if not path.is_absolute() and not path.exists():
        path = output_dir / resume_from
    if not (path / MARKER).is_file():
        raise ConfigError(
            f"--resume_from_checkpoint {resume_from}: {path} is not a complete checkpoint "
            "(missing or interrupted while saving); use 'latest' or another checkpoint"
        )
    try:
        verify(path)
    except CorruptCheckpoint as why:
        raise ConfigError(
            f"--resume_from_checkpoint {resume_from}: checkpoint {path} is corrupt ({why}); "
            "use 'latest' (it skips corrupt checkpoints) or name an earlier one"
        ) from None
    return path


# ------------------------------------------------------------------ gathering
def shards_parameters(accelerator) -> bool:
    """Whether a rank holds only part of the parameters (FSDP, DeepSpeed ZeRO-3)."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        return True
    if kind == DistributedType.DEEPSPEED:
        return accelerator.deepspeed_config["zero_optimization"].get("stage", 0) == 3
    return False


def gather_weights(accelerator, model, names) -> dict[str, torch.Tensor]:
    """The whole tensors named `names`, on rank 0; every rank must call this.

    accelerate's `get_state_dict` is a collective under FSDP (full state dict, rank 0 only,
    offloaded to CPU) and DeepSpeed ZeRO-3; under DDP or one process it is the unwrapped
    model's own tensors, so the saved bytes are the same as before.
    """
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return {}
    wanted = set(names)
    return {k: v for k, v in state.items() if k in wanted}


@dataclass
class OptimizerState:
    """What optimizer.pt holds of the optimizer, as gathered on rank 0.

    kind "optimizer": optimizer.state_dict() (DDP, one process: whole on every rank);
    "optimizer_by_name": the full state keyed by parameter name (FSDP, via
    torch.distributed.checkpoint); "optimizer_per_rank": each rank's own state_dict
    (DeepSpeed, whose ZeRO optimizer holds only its partition).
    """

    kind: str
    payload: dict | list


def _inner(optimizer):
    return getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer


def gather_optimizer(accelerator, model, optimizer) -> OptimizerState:
    """The optimizer state to write, on rank 0 (empty elsewhere); every rank must call this."""
    from accelerate.utils import DistributedType

    kind, rank0 = accelerator.distributed_type, accelerator.is_main_process
    if kind == DistributedType.FSDP:
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        full = get_optimizer_state_dict(model, _inner(optimizer), options=options)
        return OptimizerState("optimizer_by_name", full if rank0 else {})
    if kind == DistributedType.DEEPSPEED and accelerator.num_processes > 1:
        import torch.distributed as dist

        gathered = [None] * accelerator.num_processes if rank0 else None
        dist.gather_object(optimizer.state_dict(), gathered, dst=0)
        return OptimizerState("optimizer_per_rank", gathered or [])
    return OptimizerState("optimizer", optimizer.state_dict() if rank0 else {})


def load_weights(accelerator, model, weights: dict[str, torch.Tensor]) -> None:
    """Put whole checkpoint tensors back into `model`, sharded or not; every rank calls it."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        if accelerator.is_fsdp2:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
            )

            options = StateDictOptions(full_state_dict=True, strict=False)
            set_model_state_dict(model, dict(weights), options=options)  # it swaps values
            return
        from torch.distributed.fsdp import FullStateDictConfig, StateDictType
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        every_rank = FullStateDictConfig(offload_to_cpu=True, rank0_only=False)
        with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT, every_rank):
            model.load_state_dict(weights, strict=False)
        return
    if shards_parameters(accelerator):  # DeepSpeed ZeRO-3
        raise ConfigError(
            "resuming under DeepSpeed ZeRO-3 is not supported (its parameters are "
            "partitioned); use FSDP or ZeRO-2"
        )
    params = dict(accelerator.unwrap_model(model).named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


# ------------------------------------------------------------------ saving
def save_checkpoint(
    output_dir: Path,
    state: LoopState,
    weights: dict[str, torch.Tensor],
    optimizer,  # gather_optimizer's OptimizerState, or an optimizer held whole
    lr_scheduler,
    rng_states: list[rng_io.RngState],
    total_limit: int | None = None,
    extra: dict[str, dict[str, torch.Tensor]] | None = None,  # more safetensors files
) -> Path:
    """Write `checkpoint-STEP` atomically; only then drop this run's oldest beyond `total_limit`.

    Rank 0 only: the tensors are what gather_weights / gather_optimizer returned there.

    A disk or permission error becomes one SaveError line; the earlier checkpoints are
    untouched and the partial folder is removed.
    """
    final = output_dir / f"checkpoint-{state.step}"
    tmp = output_dir / f".checkpoint-{state.step}.tmp"
    earlier = run_checkpoints(output_dir, state.run_id or None)
    intact = f"{earlier[-1].name} is intact" if earlier else "no earlier checkpoint exists"
    with saving(final.name, output_dir, intact, resumable=bool(earlier)):
        _clear_leftovers(output_dir)
        try:
            tmp.mkdir()
            _write_files(tmp, state, weights, optimizer, lr_scheduler, rng_states)
            for name, tensors in (extra or {}).items():  # e.g. ema.safetensors (issue 9)
                save_file(tensors, tmp / name)
            fsync_tree(tmp)
            _seal(tmp)
            _publish(tmp, final)
        except BaseException:
            remove_tree(tmp)
            raise
    if total_limit:
        rotate(output_dir, total_limit, state.run_id or None)
    return final


def _write_files(tmp, state, weights, optimizer, lr_scheduler, rng_states) -> None:
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in weights.items()}, tmp / "model.safetensors"
    )
    if not isinstance(optimizer, OptimizerState):  # callers that hold it whole
        optimizer = OptimizerState("optimizer", optimizer.state_dict())
    with open(tmp / "optimizer.pt", "wb") as fh:  # a Python file: write errors are OSErrors
        payload = {optimizer.kind: optimizer.payload, "lr_scheduler": lr_scheduler.state_dict()}
        torch.save(payload, fh)
    tensors, plain = rng_io.pack(rng_states)
    save_file(tensors, tmp / "rng.safetensors")
    (tmp / "rng.json").write_text(json.dumps(plain))
    (tmp / "state.json").write_text(json.dumps(asdict(state)))
    fsync_tree(tmp)


def _seal(tmp: Path) -> None:
    """Write the manifest (every file's size and sha256): the checkpoint is now complete.

    FILES are required; any other file written (ema.safetensors) is sealed as well."""
    others = sorted(
        p.name for p in tmp.iterdir() if p.is_file() and p.name not in FILES and p.name != MARKER
    )
    files = sha256_files(tmp, [*FILES, *others])
    with open(tmp / MARKER, "w") as fh:
        fh.write(json.dumps({"format": 1, "files": files}, indent=1))
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(tmp)


def _publish(tmp: Path, final: Path) -> None:
    """Rename the sealed folder into place (an existing same-step checkpoint is replaced)."""
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        remove_tree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    remove_tree(old)


def rotate(output_dir: Path, keep: int, run_id: str | None) -> None:
    """Delete this run's oldest checkpoints beyond `keep` (renamed away first, then removed)."""
    for old in run_checkpoints(output_dir, run_id)[:-keep]:
        doomed = old.with_name(f".{old.name}.deleting")
        os.replace(old, doomed)
        remove_tree(doomed)


def _clear_leftovers(output_dir: Path) -> None:
    """Remove hidden leftovers of interrupted saves (`.checkpoint-N.tmp`, ...)."""
    for child in output_dir.iterdir():
        if _LEFTOVER.match(child.name):
            remove_tree(child)


# ------------------------------------------------------------------ loading
def load_checkpoint(
    path: Path, optimizer, lr_scheduler, rank: int = 0, model=None
) -> tuple[LoopState, dict[str, torch.Tensor], rng_io.RngState | None]:
    """Read a checkpoint: (loop state, trainable weights, this rank's rng states or None).

    The optimizer and lr scheduler are restored in place (an FSDP checkpoint's optimizer
    state, keyed by parameter name, needs the prepared `model`; every rank calls this).
    Unreadable files, or states that do not fit this run's optimizer, raise a one-line
    ConfigError.
    """
    try:
        weights = load_file(path / "model.safetensors")
        tensors = load_file(path / "rng.safetensors")
        plain = json.loads((path / "rng.json").read_text())
        opt = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
        state = LoopState.from_json((path / "state.json").read_text())
    except Exception as exc:  # any unreadable part means the checkpoint cannot be trusted
        raise ConfigError(
            f"checkpoint {path} is corrupt ({type(exc).__name__}); delete it or resume "
            "from an earlier checkpoint with --resume_from_checkpoint"
        ) from exc
    if "optimizer_per_rank" in opt:  # written under FSDP / DeepSpeed: this rank's part
        per_rank = opt["optimizer_per_rank"]
        if rank >= len(per_rank):
            raise ConfigError(
                f"checkpoint {path} holds a sharded optimizer state of {len(per_rank)} "
                "processes; resume it with that many processes"
            )
        opt["optimizer"] = per_rank[rank]
    try:
        if "optimizer_by_name" in opt:
            _load_optimizer_by_name(model, optimizer, opt["optimizer_by_name"])
        else:
            optimizer.load_state_dict(opt["optimizer"])
        lr_scheduler.load_state_dict(opt["lr_scheduler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise ConfigError(
            f"checkpoint {path} does not fit this run's optimizer ({type(exc).__name__}: the "
            "model type, LoRA rank or trainable weights changed); resume with the config "
            "that wrote it"
        ) from exc
    return state, weights, rng_io.unpack(tensors, plain, rank)


def _load_optimizer_by_name(model, optimizer, full: dict) -> None:
    """Every rank passes the full state; torch keeps each rank's shard of it."""
    if model is None:
        raise ValueError("an FSDP checkpoint's optimizer state needs the prepared model")
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_optimizer_state_dict(model, _inner(optimizer), full, options=options)


def load_extra(path: Path, name: str) -> dict[str, torch.Tensor] | None:
    """An optional safetensors file of a (verified) checkpoint, or None when absent."""
    if not (path / name).is_file():
        return None
    try:
        return load_file(path / name)
    except Exception as exc:
        raise ConfigError(
            f"checkpoint {path}: {name} is unreadable ({type(exc).__name__})"
        ) from exc
