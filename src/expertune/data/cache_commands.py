"""`expertune cache build|info|verify|prune --config FILE [--config FILE ...] [flags]`.

- build: load each config's model and fill the caches of every enabled dataset ahead of
  training (a progress bar in images/s), then say what was found, made and left out.
- info: per cache folder the configs use, entries and bytes by kind, and leftovers of
  killed builds. Loads no model.
- verify: read every entry in those folders in full and check its digest. Corrupt
  entries are listed, a one-line error; `--delete` removes them (a build remakes them).
- prune: entries in those folders that none of the given configs refers to (another
  model, images removed, changed crops). Lists them and deletes nothing unless `--yes`;
  with `--yes`, leftovers older than an hour go too. It loads each model (its
  fingerprints are part of the keys) and scans the datasets, so pass every config
  that shares the folders: stage one and stage two.

Training flags after the config apply to every config, as for `expertune train`.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from expertune.errors import DataError

SHOWN = 5  # paths printed before "and N more"
STALE_S = 3600  # leftovers older than this are from a dead builder


def add_parser(sub, no_abbrev) -> None:
    """The `cache` subcommand and its four actions, on `sub` (argparse subparsers)."""
    cache = sub.add_parser("cache", help="build, inspect, verify or prune the shared caches")
    actions = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    actions.add_parser = no_abbrev(actions.add_parser)
    helps = {
        "build": "fill the caches of every enabled dataset ahead of training",
        "info": "entries and sizes per cache folder (no model is loaded)",
        "verify": "read every entry and check its checksum",
        "prune": "list (and with --yes delete) entries no given config refers to",
    }
    for name, text in helps.items():
        action = actions.add_parser(name, help=text)
        action.add_argument(
            "--config", action="append", required=True, help="a training config; repeatable"
        )
        if name == "verify":
            action.add_argument("--delete", action="store_true", help="delete corrupt entries")
        if name == "prune":
            action.add_argument("--yes", action="store_true", help="delete what is listed")


def run(args) -> int:
    """Run the cache action `args.cache_command` (see the module docstring)."""
    from expertune.config import load_config

    flags = [arg for arg in args.flags if arg != "--"]
    configs = [(path, load_config(path, flags)) for path in args.config]
    action = {"build": _build, "info": _info, "verify": _verify, "prune": _prune}
    return action[args.cache_command](configs, args)


def cache_roots(cfg) -> list[Path]:
    """The cache folders a config's datasets use (latents and text), in first-use order."""
    from expertune.data.planning import dataloader_config

    config = dataloader_config(cfg)
    roots: list[Path] = []
    for spec in config.images:
        for root in (
            config.latent_cache_dir(spec, cfg.cache_dir),
            config.text_cache_dir(spec, cfg.cache_dir),
        ):
            if Path(root) not in roots:
                roots.append(Path(root))
    return roots


def _components(cfg):
    from expertune.models.load import load_components

    return load_components(
        cfg.pretrained_model_name_or_path,
        family=cfg.model_family,
        allow_pickle=getattr(cfg, "allow_pickle_weights", False),
    )


def _build(configs, args) -> int:
    from expertune.data.training_set import prepare_data

    for path, cfg in configs:
        data = prepare_data(cfg, _components(cfg), global_batch=cfg.train_batch_size)
        s = data.stats
        images = len(data.training.items) + len(data.eval_dataset or ())
        rate = s.latents_encoded / s.seconds if s.seconds > 0 else 0.0
        print(
            f"{path}: {images} images ready ({data.training.describe()}); latents "
            f"{s.latents_encoded} made, captions {s.captions_encoded} made, {s.hits} entries "
            f"found; {s.seconds:.1f}s ({rate:.1f} img/s)"
        )
        summary = data.report.summary()
        if summary:
            print(f"{path}: {summary}")
    return 0


def _info(configs, args) -> int:
    from expertune.data.cache import Cache

    for root in _all_roots(configs):
        cache = Cache(root)
        counts, sizes = Counter(), Counter()
        for entry in cache.entries():
            counts[entry.kind] += 1
            sizes[entry.kind] += entry.size
        kinds = ", ".join(f"{k}: {counts[k]} entries, {_mb(sizes[k])}" for k in sorted(counts))
        leftovers = len(cache.leftovers())
        note = f"; {leftovers} leftover temp/lock files" if leftovers else ""
        state = (kinds or "empty") if root.is_dir() else "does not exist yet"
        print(f"{root}: {state}{note}")
    return 0


def _verify(configs, args) -> int:
    from tqdm.auto import tqdm

    from expertune.data.cache import OK, Cache

    bad, checked = [], 0
    for root in _all_roots(configs):
        cache = Cache(root)
        for entry in tqdm(list(cache.entries()), desc=f"verify {root}", unit="entry"):
            checked += 1
            if cache.check(entry.kind, entry.key) != OK:
                bad.append(entry.path)
                if args.delete:
                    entry.path.unlink(missing_ok=True)
    if bad and not args.delete:
        raise DataError(
            f"{len(bad)} of {checked} cache entries are corrupt ({_list(bad)}); run "
            "`expertune cache verify --delete` or let the next build replace them"
        )
    print(f"verified {checked} entries: {len(bad)} corrupt{' (deleted)' if bad else ''}")
    return 0


def _prune(configs, args) -> int:
    from expertune.data.cache import Cache
    from expertune.data.cache_use import claimed

    wanted = _referenced(configs)
    doomed, size, kept, holders = [], 0, 0, []
    for root in _all_roots(configs):
        in_use, who = claimed(root)  # entries running jobs read are never deleted
        holders.extend(h for h in who if h not in holders)
        for entry in Cache(root).entries():
            if (entry.kind, entry.key) in wanted.get(root, set()):
                continue
            if (entry.kind, entry.key) in in_use:
                kept += 1
                continue
            doomed.append(entry.path)
            size += entry.size
    stale = [p for root in _all_roots(configs) for p in _stale(Cache(root).leftovers())]
    names = ", ".join(path for path, _ in configs)
    note = f"; kept {kept} entries that running jobs use ({', '.join(holders)})" if kept else ""
    if not args.yes:
        print(
            f"would delete {len(doomed)} entries ({_mb(size)}) not used by {names}"
            f"{': ' + _list(doomed) if doomed else ''}{note}; run again with --yes to delete them"
        )
        return 0
    for path in doomed + stale:
        path.unlink(missing_ok=True)
    print(f"deleted {len(doomed)} entries ({_mb(size)}) and {len(stale)} stale leftovers{note}")
    return 0


def _referenced(configs) -> dict[Path, set[tuple[str, str]]]:
    """(kind, key) of every entry the configs use, by cache folder."""
    from expertune.data.encode import Encoders, key_items
    from expertune.data.keys import LATENTS, TEXT
    from expertune.data.planning import bucket_alignment, plan_images
    from expertune.models.family import get_family

    wanted: dict[Path, set[tuple[str, str]]] = {}
    for _, cfg in configs:
        components = _components(cfg)
        alignment = bucket_alignment(cfg, components.vae)
        plan = plan_images(cfg, get_family(components.family), alignment)
        fps = Encoders.of(components).fingerprints()
        for item in key_items(plan.images, fps["vae"], fps["text"]):
            wanted.setdefault(item.latent_root, set()).add((LATENTS, item.latent_key))
            wanted.setdefault(item.text_root, set()).add((TEXT, item.text_key))
    return wanted


def _all_roots(configs) -> list[Path]:
    roots: list[Path] = []
    for _, cfg in configs:
        roots.extend(r for r in cache_roots(cfg) if r not in roots)
    return roots


def _stale(paths: list[Path]) -> list[Path]:
    now = time.time()
    return [p for p in paths if p.exists() and now - p.stat().st_mtime > STALE_S]


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def _list(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else "")
