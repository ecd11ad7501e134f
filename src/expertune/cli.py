"""The one entry point: `expertune train|config|generate|tiny-model|demo|cache|evaluate|...`.

Heavy libraries (torch, diffusers) are imported inside the subcommands, so `--help` and
`config show` start instantly. This is the only place that maps a UserError to exit
code 2; an unexpected exception keeps its traceback and exits 1 (a bug to report).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback

from expertune.errors import Interrupted, UserError

EXIT_INTERNAL_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="expertune",
        allow_abbrev=False,
        epilog="train and config show take any training flag after --config FILE, "
        "e.g. --learning_rate=1e-5 --refiner_training.",
        description="Train and run timestep mixture-of-experts diffusion models (SDXL family).",
    )
    from expertune import __version__
    from expertune.config.help import flag_help  # no torch: the schema alone

    p.add_argument("--version", action="version", version=f"expertune {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser = _no_abbrev(sub.add_parser)
    flags = {"epilog": flag_help(), "formatter_class": argparse.RawDescriptionHelpFormatter}

    t = sub.add_parser("train", help="train one expert from a config file plus flags", **flags)
    t.add_argument("--config", action="append", help="config.env, config.json or config.toml")

    m = sub.add_parser("moe", help="train K experts from one moe config (TOML or JSON)")
    m.add_argument("--config", required=True, help="moe.toml or moe.json")
    m.add_argument("--dry-run", action="store_true", help="print the plan; load no model")
    m.add_argument("--only", metavar="NAME", help="train this one run only (an expert, parent)")
    m.add_argument(
        "--parallel", type=int, default=1, metavar="N", help="train up to N runs at once"
    )

    c = sub.add_parser("config", help="inspect a config")
    csub = c.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    csub.add_parser = _no_abbrev(csub.add_parser)
    show = csub.add_parser("show", help="print the resolved config (no model, no network)", **flags)
    show.add_argument("--config", action="append", help="config.env, config.json or config.toml")
    show.add_argument("--json", action="store_true", help="one JSON object")

    from expertune.app.generate import add_parser as add_generate_parser  # no torch

    add_generate_parser(sub)

    tm = sub.add_parser("tiny-model", help="build the embedded tiny SDXL model offline")
    tm.add_argument("out_dir")
    tm.add_argument("--seed", type=int, default=0)
    tm.add_argument(
        "--refiner", action="store_true", help="the SDXL-refiner architecture (same VAE)"
    )

    d = sub.add_parser("demo", help="the seed's two-expert workflow on the tiny model")
    d.add_argument("--workdir", default="expertune-demo")
    d.add_argument("--steps", type=int, default=None, help="training steps per expert")

    from expertune.data.cache_commands import add_parser as add_cache_parser  # no torch

    add_cache_parser(sub, _no_abbrev)

    e = sub.add_parser("evaluate", help="eval loss per band: experts vs a single baseline model")
    e.add_argument("--experts", nargs="+", required=True, metavar="DIR", help="expert folders")
    e.add_argument("--baseline", metavar="DIR", help="a single model, evaluated on every band")
    e.add_argument("--data", required=True, metavar="CONFIG", help="config whose data to use")
    e.add_argument("--timesteps", type=int, help="timesteps per band (default: eval_timesteps)")
    e.add_argument("--out", default="expertune-eval", help="folder for eval_loss.json/.png")

    r = sub.add_parser("report", help="write OUTPUT_DIR/report.html again from its files")
    r.add_argument("output_dir")

    from expertune.app.export import add_parser as add_export_parser  # no torch

    add_export_parser(sub)
    return p


def _no_abbrev(add_parser):
    """Subparsers that never guess a flag from its prefix (training flags pass through)."""

    def add(*args, **kwargs):
        return add_parser(*args, allow_abbrev=False, **kwargs)

    return add


def _cmd_train(args) -> int:
    from expertune.config import load_config

    cfg = load_config(_one_config(args.config), _flags(args.flags))  # errors before torch
    from expertune.app.train import train_expert

    result = train_expert(cfg)
    if _rank() == 0:  # under a distributed launch, one summary line
        print(
            f"trained {result.steps_this_run} steps in this run in {result.wall_s:.1f}s "
            f"({result.steps} in total) -> {cfg.output_dir}"
        )
    return 0


def _rank() -> int:
    """This process's rank under a distributed launch (torchrun / accelerate set RANK)."""
    return int(os.environ.get("RANK", "0") or 0)


def _world_size() -> int:
    """How many processes a distributed launch started (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def _cmd_moe(args) -> int:
    from expertune.config.moe import describe, load_moe
    from expertune.errors import ConfigError

    moe = load_moe(args.config, _flags(args.flags))  # every config error before torch
    names = [c.expert_name for c in moe.runs()]
    if args.only is not None and args.only not in names:
        raise ConfigError(
            f"--only {args.only}: {args.config} has no run of that name; "
            f"pick one of {', '.join(names)}"
        )
    if args.parallel < 1 or (args.parallel > 1 and args.only is not None):
        raise ConfigError(
            f"--parallel {args.parallel}: give a number >= 1, and not with --only "
            "(which trains one run)"
        )
    if args.parallel > 1 and _world_size() > 1:
        raise ConfigError(
            f"--parallel {args.parallel}: under accelerate launch every run already trains on "
            "all launched processes; drop --parallel, or run `expertune moe --parallel N` "
            "without a launcher (one process, and one GPU, per run)"
        )
    main_process = _rank() == 0
    if main_process:
        print(describe(moe))
    if args.dry_run:
        return 0
    from expertune.app.moe import run_moe

    relaunch = (args.config, _flags(args.flags))
    written = run_moe(
        moe, only=args.only, parallel=args.parallel, relaunch=relaunch, writes=main_process
    )
    if not main_process:  # under a distributed launch rank 0 alone reports
        return 0
    if written:
        print(f"wrote {written}")
    elif args.only is None:
        print("runs still to train; manifest not written")
    else:
        print(f"{args.only} is trained; run without --only to write the manifest")
    return 0


def _cmd_config(args) -> int:
    from expertune.config import load_config, show_config
    from expertune.config.moe import is_moe_config, show_moe

    path = _one_config(args.config)
    if path is not None and is_moe_config(path):  # the plan, then every run's flags
        print(show_moe(path, _flags(args.flags), as_json=args.json))
        return 0
    cfg = load_config(path, _flags(args.flags))
    print(show_config(cfg, as_json=args.json))
    return 0


def _cmd_generate(args) -> int:
    from expertune.app.generate import run

    return run(args)


def _cmd_tiny_model(args) -> int:
    from expertune.models.tiny import build_tiny_sdxl, build_tiny_sdxl_refiner

    build = build_tiny_sdxl_refiner if args.refiner else build_tiny_sdxl
    print(f"built {build(args.out_dir, seed=args.seed)}")
    return 0


def _cmd_demo(args) -> int:
    from expertune.app.demo import run_demo

    run_demo(args.workdir, steps=args.steps)
    return 0


def _cmd_cache(args) -> int:
    from expertune.data.cache_commands import run

    return run(args)


def _cmd_evaluate(args) -> int:
    from expertune.app.evaluate import cmd_evaluate

    return cmd_evaluate(args)


def _cmd_report(args) -> int:
    from expertune.evaluate.report import write_report

    print(f"wrote {write_report(args.output_dir)}")
    return 0


def _cmd_export(args) -> int:
    from expertune.app.export import run

    return run(args)


COMMANDS = {
    "train": _cmd_train,
    "config": _cmd_config,
    "moe": _cmd_moe,
    "generate": _cmd_generate,
    "tiny-model": _cmd_tiny_model,
    "demo": _cmd_demo,
    "cache": _cmd_cache,
    "evaluate": _cmd_evaluate,
    "report": _cmd_report,
    "export": _cmd_export,
}


def _one_config(given: list[str] | None) -> str | None:
    """The one --config of train / config show; a second one would silently win."""
    from expertune.errors import ConfigError

    if given and len(given) > 1:
        raise ConfigError(
            f"--config is given {len(given)} times ({', '.join(given)}); give one config "
            "file and put further settings after it as flags"
        )
    return given[0] if given else None


def _flags(rest: list[str]) -> list[str]:
    """Training flags given on the command line; a `--` separator is dropped."""
    return [arg for arg in rest if arg != "--"]


def _quiet_libraries() -> None:
    """Keep library chatter (import-time notices, hub telemetry) out of the user's terminal."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # under a distributed launch only rank 0 narrates; the others report only problems
    level = logging.INFO if _rank() == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s")
    for name in ("accelerate", "diffusers", "transformers", "huggingface_hub", "PIL"):
        logging.getLogger(name).setLevel(logging.WARNING)


def entry() -> int:
    """The `expertune` command and `python -m expertune`: main() as its own process."""
    try:
        return main(fast_start=True)
    finally:
        _leave_process_group()


def _leave_process_group() -> None:
    """Under a distributed launch, end the process group once the whole command is done:
    every run of one command (moe's parent and experts) trains in the same group."""
    dist = sys.modules.get("torch.distributed")  # never imports torch for --help
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv: list[str] | None = None, fast_start: bool = False) -> int:
    """Run one subcommand and return its exit code.

    0 success; 2 a user error (one line naming what and the fix, no traceback); 1 an
    internal error (the traceback, then one line asking for a report); 130 on Ctrl-C and
    143 on SIGTERM, after training saved the checkpoint that was due.

    `fast_start` (a process of its own): the training commands hold the cyclic garbage
    collector off while they import their libraries (expertune.startup_gc).
    """
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("train", "config", "cache", "moe"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.flags = rest
    _quiet_libraries()
    from expertune import startup_gc

    if fast_start and args.command in ("train", "moe"):
        startup_gc.hold()  # the training run settles it once its libraries are in
    try:
        return _dispatch(args)
    finally:
        startup_gc.settle()


def _dispatch(args) -> int:
    """The subcommand's exit code; user errors and interrupts become their one line."""
    try:
        return COMMANDS[args.command](args)
    except UserError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the message holds
        print(f"expertune: {exc.kind}: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except Interrupted as exc:
        print(f"expertune: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("expertune: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc()
        print(
            "expertune: internal error (a bug, not your input): please report it with the "
            "traceback above",
            file=sys.stderr,
        )
        return EXIT_INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(entry())
