"""`expertune export`: an expert (or a whole chain) as files ComfyUI, A1111 and diffusers load.

    expertune export EXPERT_DIR --single-file out.safetensors [--dtype fp16|bf16|fp32]
    expertune export EXPERT_DIR --lora out.safetensors [--format kohya|diffusers]
    expertune export --moe OUTPUT_ROOT [--out DIR]

The parser imports nothing heavy (`expertune --help` stays torch-free); `run` does.
"""

from __future__ import annotations

from pathlib import Path

from expertune.errors import ConfigError

DEFAULT_DTYPE = "fp16"


def add_parser(sub) -> None:
    """Register `export` on the top-level subparsers."""
    x = sub.add_parser(
        "export", help="write an expert as one SDXL checkpoint, a kohya/diffusers LoRA, or a chain"
    )
    x.add_argument(
        "expert_dir", nargs="?", metavar="EXPERT_DIR", help="a finished expert's OUTPUT_DIR"
    )
    what = x.add_mutually_exclusive_group(required=True)
    what.add_argument("--single-file", metavar="FILE", help="original SDXL checkpoint layout")
    what.add_argument("--lora", metavar="FILE", help="a LoRA expert's adapter")
    what.add_argument("--moe", metavar="OUTPUT_ROOT", help="every expert listed in moe.json")
    x.add_argument("--format", help="with --lora: kohya (default) or diffusers")
    x.add_argument(
        "--out", metavar="DIR", help="with --moe: output folder (default OUTPUT_ROOT/export)"
    )
    x.add_argument("--dtype", default=DEFAULT_DTYPE, help="fp16 (default), bf16 or fp32")
    x.add_argument("--overwrite", action="store_true", help="replace files that exist")


def _check_combination(args) -> None:
    """Refuse options that would be ignored, before anything is read."""
    if args.moe:
        if args.expert_dir:
            raise ConfigError("--moe takes OUTPUT_ROOT itself; drop EXPERT_DIR")
    elif not args.expert_dir:
        raise ConfigError("EXPERT_DIR is missing: expertune export EXPERT_DIR --single-file FILE")
    if args.format is not None and not args.lora:
        raise ConfigError("--format applies to --lora only; drop it")
    if args.out is not None and not args.moe:
        raise ConfigError("--out applies to --moe only; --single-file and --lora name their file")


def run(args) -> int:
    _check_combination(args)
    if args.moe:
        from expertune.export.chain import export_chain

        out = Path(args.out) if args.out else Path(args.moe) / "export"
        path = export_chain(args.moe, out, dtype=args.dtype, overwrite=args.overwrite)
        print(f"wrote {path.parent} ({path.name} and one .safetensors per expert)")
        return 0
    if args.lora:
        from expertune.export.lora import export_lora

        result = export_lora(
            args.expert_dir,
            args.lora,
            format=args.format or "kohya",
            dtype=args.dtype,
            overwrite=args.overwrite,
        )
        print(
            f"wrote {result.path} ({result.format}, {result.modules} modules, rank {result.rank}, "
            f"alpha {result.alpha:g}, {result.bytes / 2**20:.1f} MiB)"
        )
        return 0
    from expertune.export.single_file import export_single_file

    result = export_single_file(
        args.expert_dir, args.single_file, dtype=args.dtype, overwrite=args.overwrite
    )
    markers = f", markers {'+'.join(result.markers)}" if result.markers else ""
    print(
        f"wrote {result.path} ({result.tensors} tensors, {result.bytes / 2**20:.1f} MiB{markers})"
    )
    return 0
