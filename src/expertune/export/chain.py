"""Every expert of a `moe` run as single files, plus the handovers that chain them.

Reads OUTPUT_ROOT/moe.json (experts in denoising order: name, band, path, handover) and
writes OUT/<name>.safetensors for each with OUT/handovers.json: which file runs from
which fraction of the denoising to which, what a UI needs to set up the same chain.
All experts are checked, and every output path, before the first file is written.
"""

from __future__ import annotations

import json
from pathlib import Path

from expertune.errors import ConfigError, ModelReferenceError
from expertune.export.expert import open_expert
from expertune.export.files import check_target, parse_dtype
from expertune.export.single_file import export_single_file

MANIFEST = "moe.json"
HANDOVERS = "handovers.json"


def read_manifest(root: Path) -> tuple[dict, list[dict]]:
    """OUTPUT_ROOT/moe.json and its experts, each with its folder resolved."""
    path = root / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelReferenceError(
            f"{path} is missing; pass the OUTPUT_ROOT of a finished `expertune moe` run"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelReferenceError(
            f"{path} is unreadable ({exc}); run `expertune moe` again"
        ) from None
    experts = manifest.get("experts") if isinstance(manifest, dict) else None
    if not isinstance(experts, list) or not experts:
        raise ModelReferenceError(f"{path} lists no experts; run `expertune moe` again")
    out = []
    for entry in experts:
        if not isinstance(entry, dict) or not {"name", "path"} <= set(entry):
            raise ModelReferenceError(
                f"{path}: every expert needs a name and a path; run `expertune moe` again"
            )
        folder = Path(entry["path"])
        out.append({**entry, "folder": folder if folder.is_absolute() else root / folder})
    return manifest, out


def export_chain(
    root: str | Path, out_dir: str | Path, *, dtype: str = "fp16", overwrite: bool = False
) -> Path:
    """Export every expert of the chain at `root` into `out_dir`; returns handovers.json."""
    parse_dtype(dtype)
    root, out_dir = Path(root), Path(out_dir)
    manifest, experts = read_manifest(root)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} is a file; --moe writes a folder of files, pick a folder")
    names = [str(e["name"]) for e in experts]
    if len(set(names)) != len(names) or any(Path(n).name != n or not n for n in names):
        raise ModelReferenceError(
            f"{root / MANIFEST} names its experts {names}: each needs a distinct plain file name"
        )
    folders = [open_expert(e["folder"]) for e in experts]  # every expert checked first
    targets = [out_dir / f"{name}.safetensors" for name in names]
    if out_dir.is_dir():
        for target in (*targets, out_dir / HANDOVERS):
            check_target(target, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    chain = []
    for entry, expert, target in zip(experts, folders, targets, strict=True):
        result = export_single_file(expert.path, target, dtype=dtype, overwrite=overwrite)
        chain.append(
            {
                "name": target.stem,
                "file": target.name,
                "band": list(expert.band),
                "denoising_start": expert.denoising_start,
                "denoising_end": expert.denoising_end,
                "handover": entry.get("handover", expert.denoising_end),
                "prediction_type": expert.prediction_type,
                "zero_terminal_snr": expert.zero_terminal_snr,
                "model_family": expert.family.name,
                "markers": list(result.markers),
            }
        )
    from expertune.train.storage import write_json_atomic

    path = out_dir / HANDOVERS
    handovers = {
        "format": 1,
        "dtype": dtype,
        "experts": chain,
        "parameterisation": manifest.get("parameterisation"),
    }
    write_json_atomic(path, handovers)
    return path
