"""`init_from`: start an expert from a trained model's UNet (eDiff-I's split).

The parent is one of three things, told apart by what the folder holds:
- an expertune expert: a published diffusers pipeline with its `expertune.json`;
- any diffusers SDXL folder (its `unet/` is what is taken);
- a sealed `checkpoint-N` folder of a full-model run (`model.safetensors` + `COMPLETE`).
Only the UNet comes from the parent; the VAE and text encoders stay MODEL_NAME's, so the
shared caches keep matching. A checkpoint of a LoRA run holds only the adapter, so it is
refused with the fix (its run's published folder holds the merged UNet).

Everything that can refuse reads only safetensors headers (names and shapes), so
preflight calls `check_parent` before anything is written; `init_unet_from` then loads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from expertune.errors import ConfigError

KINDS = "a diffusers folder, an expertune expert or a run's checkpoint-N folder"
_WEIGHTS = "diffusion_pytorch_model"


@dataclass(frozen=True)
class Parent:
    """Where an expert's starting UNet comes from."""

    path: Path
    kind: str  # "expert" | "diffusers" | "checkpoint"
    record: dict | None  # the parent's expertune.json, when it is an expert

    def describe(self) -> dict:
        """What the child's record says about its parent."""
        record = self.record or {}
        return {
            "path": str(self.path),
            "kind": self.kind,
            "name": record.get("name"),
            "band": record.get("band"),
            "steps": record.get("steps") if self.kind == "expert" else self._checkpoint_step(),
        }

    def _checkpoint_step(self) -> int | None:
        if self.kind != "checkpoint":
            return None
        return int(self.path.name.rsplit("-", 1)[-1]) if "-" in self.path.name else None

    def weight_files(self) -> list[Path]:
        """The safetensors files holding the parent's UNet."""
        if self.kind == "checkpoint":
            return [self.path / "model.safetensors"]
        return unet_weight_files(self.path / "unet", f"init_from {self.path}")


def find_parent(path: str | Path) -> Parent:
    """Classify `path` as a parent, or raise the one-line ConfigError naming the fix."""
    from expertune.records.expert import read_record
    from expertune.records.layout import CHECKPOINT_MARKER

    p = Path(path).expanduser()
    if not p.is_dir():
        raise ConfigError(f"init_from {path}: no such folder; point init_from at {KINDS}")
    if (p / "model.safetensors").is_file():
        if not (p / CHECKPOINT_MARKER).is_file():
            raise ConfigError(
                f"init_from {path}: this checkpoint was never sealed ({CHECKPOINT_MARKER} "
                "missing, an interrupted save); point init_from at a complete checkpoint-N"
            )
        return Parent(p, "checkpoint", None)
    if (p / "unet").is_dir():
        record = read_record(p)
        return Parent(p, "expert" if record else "diffusers", record)
    raise ConfigError(
        f"init_from {path}: holds neither unet/ nor model.safetensors; point it at {KINDS}"
    )


def unet_weight_files(folder: Path, where: str) -> list[Path]:
    """The safetensors file(s) of a diffusers `unet/` folder: sharded (index), plain, or
    the one variant present (e.g. fp16)."""
    index = folder / f"{_WEIGHTS}.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / s for s in shards]
    plain = folder / f"{_WEIGHTS}.safetensors"
    if plain.is_file():
        return [plain]
    found = sorted(folder.glob("*.safetensors"))
    if not found:
        raise ConfigError(
            f"{where}: {folder} holds no safetensors weights; convert it with "
            "save_pretrained(..., safe_serialization=True)"
        )
    return found[:1]


def tensor_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, read from safetensors headers only (no weights loaded)."""
    from safetensors import safe_open

    shapes = {}
    for file in files:
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():  # noqa: SIM118 - safe_open is not a mapping
                shapes[key] = tuple(f.get_slice(key).get_shape())
    return shapes


def check_parent(path: str | Path, model_unet: Path | None) -> Parent:
    """The parent, after checking its UNet has exactly the tensors of MODEL_NAME's UNet
    (`model_unet`: that model's unet/ folder; None when it holds no safetensors to read)."""
    parent = find_parent(path)
    theirs = tensor_shapes(parent.weight_files())
    if parent.kind == "checkpoint" and any("lora_" in k for k in theirs):
        raise ConfigError(
            f"init_from {path}: a checkpoint of a LoRA run holds only the adapter; point "
            "init_from at that run's published OUTPUT_DIR (its merged pipeline)"
        )
    if model_unet is not None:
        ours = tensor_shapes(unet_weight_files(model_unet, "MODEL_NAME"))
        differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
        if differ:
            raise ConfigError(
                f"init_from {path}: its UNet does not fit MODEL_NAME's ({len(differ)} of "
                f"{len(ours)} tensors differ, e.g. {differ[0]}); split from a parent of the "
                "same architecture as MODEL_NAME"
            )
    return parent


def init_unet_from(unet, parent: Parent) -> None:
    """Overwrite every weight of `unet` with the parent's (before any adapter is added)."""
    from safetensors.torch import load_file

    weights = {}
    for file in parent.weight_files():
        weights.update(load_file(str(file)))
    own = unet.state_dict()
    if set(own) != set(weights) or any(own[k].shape != weights[k].shape for k in own):
        raise ConfigError(
            f"init_from {parent.path}: its UNet does not fit MODEL_NAME's; split from a "
            "parent of the same architecture as MODEL_NAME"
        )
    unet.load_state_dict(weights, strict=True)
