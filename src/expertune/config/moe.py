"""A moe config (one TOML or JSON file) -> the band plan and one TrainConfig per expert.

    output_root = "runs/moe"
    edges = [0, 250, 600, 1000]   # or strengths = [0.35] | snr = [0.25, 4.0] | boundary_ratio
    parent_steps = 200            # optional: train a full-range parent, split it (eDiff-I)
    baseline = true               # optional: one full-range model, same total steps
    [shared]                      # any training flag, as in config.json
    pretrained_model_name_or_path = "expertune/tiny-sdxl"
    [[experts]]                   # in denoising order: the first owns the highest-noise band
    name = "high"
    learning_rate = 1e-5

Bands come from exactly one of four keys and are normalised into one BandPlan here, so
every expert, the manifest and inference agree on the same edges. `strengths` are the
seed's refiner strengths (each the share of T below an edge), `snr` the SNR values where
edges fall (computed from the model's own schedule, zero-terminal SNR applied when set),
`boundary_ratio` Wan 2.2's convention (the high-noise expert owns t >= ratio * T).

`parent_steps = N` adds a full-range parent (OUTPUT_ROOT/parent, N steps on the [shared]
flags) that every expert without its own `init_from` starts from. `baseline = true`
adds a full-range model (OUTPUT_ROOT/baseline) trained for the experts' total steps from
the same start, so the report can say whether the split paid.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from expertune.config.build import build_config
from expertune.config.schema import SDXL_TRAIN_TIMESTEPS, TrainConfig
from expertune.config.setting import Setting
from expertune.config.sources import read_mapping, read_text
from expertune.errors import ConfigError
from expertune.schedule.bands import BandPlan, strength_boundary

PLAN_KEYS = ("edges", "strengths", "snr", "boundary_ratio")
TOP_KEYS = {"output_root", "baseline", "parent_steps", "shared", "experts", *PLAN_KEYS}
RESERVED = ("cache", "parent", "baseline", "logs", "report")  # folders of OUTPUT_ROOT
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MIN_EXPERTS, MAX_EXPERTS = 2, 8


@dataclass(frozen=True)
class MoePlan:
    """The whole moe run: where it writes, the plan, and each expert's TrainConfig."""

    output_root: Path
    plan: BandPlan
    names: tuple[str, ...]  # denoising order: names[0] owns the highest-noise band
    experts: tuple[TrainConfig, ...]  # same order as names
    baseline: TrainConfig | None  # `baseline = true`: one full-range model, same steps
    source: str  # how the bands were given, e.g. "edges", "snr"
    parent: TrainConfig | None = None  # `parent_steps = N`: trained first, then split

    def runs(self) -> tuple[TrainConfig, ...]:
        """Every training run of the moe run, in the order they train."""
        first = (self.parent,) if self.parent else ()
        return (*first, *self.experts, *((self.baseline,) if self.baseline else ()))

    def band_index(self, position: int) -> int:
        """The plan's (ascending) band index of the expert at denoising `position`."""
        return len(self.plan) - 1 - position


def load_moe(path: str | Path, overrides: list[str] = ()) -> MoePlan:
    """Read, check and expand a moe config; every problem is one ConfigError line."""
    path = Path(path)
    data = _read(path)
    where = str(path)
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in {where}; the top level takes "
            f"{', '.join(sorted(TOP_KEYS))} (training flags go in [shared] or [[experts]])"
        )
    shared = data.get("shared", {})
    experts = data.get("experts")
    if not isinstance(shared, dict):
        raise ConfigError(f"[shared] in {where} must be a table of training flags")
    if not isinstance(experts, list) or not all(isinstance(e, dict) for e in experts):
        raise ConfigError(f"{where} needs [[experts]] tables, one per expert, each with a name")
    names = _names(experts, where)
    root = Path(str(data.get("output_root", "moe-output")))
    base = {**read_mapping(shared, f"[shared] in {where}"), **_argv(overrides)}
    probe = build_config({**base, "output_dir": Setting(str(root), "output_root", where)})
    plan, source = _plan(data, len(names), probe, where)
    base.setdefault("cache_dir", Setting(str(root / "cache"), "output_root", where))
    parent = _parent(data, base, root, where)
    if parent is not None:
        base.setdefault("init_from", Setting(parent.output_dir, "parent_steps", where))
    chain = [str(root / name) for name in reversed(names)]  # ascending bands
    configs = []
    for position, (name, table) in enumerate(zip(names, experts, strict=True)):
        own = {k: v for k, v in table.items() if k != "name"}
        settings = {**base, **read_mapping(own, f"[[experts]] {name} in {where}")}
        settings["output_dir"] = Setting(str(root / name), "output_root", where)
        settings["band_edges"] = Setting(list(plan.edges), source, where)
        settings["band_index"] = Setting(len(plan) - 1 - position, "experts", where)
        settings["expert_name"] = Setting(name, "name", where)
        settings.setdefault("validation_chain", Setting(chain, "experts", where))
        configs.append(build_config(settings))
    baseline = _baseline(data, base, configs, root, where)
    return MoePlan(root, plan, names, tuple(configs), baseline, source, parent)


def _full_range(base: dict, root: Path, name: str, key: str, where: str, steps: int):
    """A one-band run of the [shared] flags into OUTPUT_ROOT/<name>."""
    settings = {**base, "max_train_steps": Setting(steps, key, where)}
    settings["output_dir"] = Setting(str(root / name), key, where)
    settings["expert_name"] = Setting(name, key, where)
    settings["band_edges"] = Setting([0, SDXL_TRAIN_TIMESTEPS], key, where)
    settings["band_index"] = Setting(0, key, where)
    return build_config(settings)


def _parent(data: dict, base: dict, root: Path, where: str) -> TrainConfig | None:
    steps = data.get("parent_steps")
    if steps is None:
        return None
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"parent_steps = {steps!r} in {where} must be a whole number >= 1")
    return _full_range(base, root, "parent", "parent_steps", where, steps)


def _baseline(data: dict, base: dict, experts: list, root: Path, where: str):
    value = data.get("baseline", False)
    if not isinstance(value, bool):
        raise ConfigError(f"baseline = {value!r} in {where} must be true or false")
    if not value:
        return None
    unset = [c.expert_name for c in experts if c.max_train_steps is None]
    if unset:
        raise ConfigError(
            f"baseline = true in {where} trains the experts' total steps, but "
            f"{', '.join(unset)} set(s) no max_train_steps; set max_train_steps in [shared]"
        )
    total = sum(c.max_train_steps for c in experts)
    return _full_range(base, root, "baseline", "baseline", where, total)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"moe config {path} does not exist; pass --config moe.toml")
    text = read_text(path)
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold one table (output_root, edges, [shared], ...)")
    return data


def _argv(overrides: list[str]) -> dict:
    from expertune.config.sources import read_argv

    return read_argv(list(overrides)) if overrides else {}


def _names(experts: list[dict], where: str) -> tuple[str, ...]:
    if not MIN_EXPERTS <= len(experts) <= MAX_EXPERTS:
        raise ConfigError(
            f"{where} lists {len(experts)} experts; a moe run takes {MIN_EXPERTS} to "
            f"{MAX_EXPERTS} [[experts]] tables"
        )
    names = []
    for i, table in enumerate(experts):
        name = table.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ConfigError(
                f"[[experts]] number {i + 1} in {where} needs a name of letters, digits, "
                "'.', '_' or '-' (it becomes its output folder), e.g. name = \"high\""
            )
        if name in names:
            raise ConfigError(f"two [[experts]] in {where} are named {name!r}; names must differ")
        if name in RESERVED:
            raise ConfigError(
                f"[[experts]] name = {name!r} in {where} is a folder the moe run uses "
                f"itself ({', '.join(RESERVED)}); pick another name"
            )
        names.append(name)
    return tuple(names)


def _plan(data: dict, k: int, probe: TrainConfig, where: str) -> tuple[BandPlan, str]:
    given = [key for key in PLAN_KEYS if key in data]
    if len(given) != 1:
        raise ConfigError(
            f"{where} must set the bands in exactly one way ({', '.join(PLAN_KEYS)}), "
            f"found {', '.join(given) or 'none'}"
        )
    key, value = given[0], data[given[0]]
    T = SDXL_TRAIN_TIMESTEPS
    if key == "boundary_ratio":
        if not isinstance(value, int | float) or not 0 < value < 1:
            raise ConfigError(f"boundary_ratio = {value!r} in {where} must lie strictly in (0, 1)")
        edges = [round(value * T)]
    else:
        if not isinstance(value, list) or not all(isinstance(v, int | float) for v in value):
            raise ConfigError(f"{key} in {where} must be a list of numbers")
        edges = _inner_edges(key, value, probe, where)
    if edges != sorted(edges) or len(set(edges)) != len(edges):
        raise ConfigError(
            f"{key} = {value} in {where} gives band edges {edges}, which overlap or are not "
            "sorted; list them so every band is non-empty and in order"
        )
    plan = BandPlan.from_edges(edges, T)
    if len(plan) != k:
        raise ConfigError(
            f"{key} = {value} in {where} makes {len(plan)} bands but [[experts]] names {k}; "
            "give one band per expert"
        )
    return plan, key


def _inner_edges(key: str, value: list, probe: TrainConfig, where: str) -> list[int]:
    T = SDXL_TRAIN_TIMESTEPS
    if key == "edges":
        inner = [int(v) for v in value if v not in (0, T)]
        if any(v != int(v) for v in value) or any(not 0 < e < T for e in inner):
            raise ConfigError(f"edges = {value} in {where} must be whole timesteps in [0, {T}]")
        return inner
    if key == "strengths":
        if any(not 0 < s < 1 for s in value):
            raise ConfigError(f"strengths = {value} in {where} must each lie strictly in (0, 1)")
        return [strength_boundary(s, T) for s in value]
    if any(s <= 0 for s in value):
        raise ConfigError(f"snr = {value} in {where} must be positive SNR values")
    ordered = sorted(value, reverse=True)  # high SNR = low t first
    if ordered != list(value):
        raise ConfigError(
            f"snr = {value} in {where} must be listed from high to low SNR "
            "(ascending timesteps), e.g. snr = [4.0, 0.25]"
        )
    return list(snr_edges(probe, value))


def snr_edges(cfg: TrainConfig, values: list[float]) -> tuple[int, ...]:
    """Timestep edges where SNR(t) of the model's schedule first drops below each value."""
    from expertune.schedule.noise import alphas_cumprod

    alphas = alphas_cumprod(_scheduler_config(cfg), cfg.rescale_betas_zero_snr)
    return BandPlan.from_snr(alphas, values).edges[1:-1]


def _scheduler_config(cfg: TrainConfig) -> dict | None:
    """The model's saved scheduler config when it is a local folder; SDXL's otherwise (the
    embedded tiny models and hub SDXL models ship SDXL's betas)."""
    path = Path(cfg.pretrained_model_name_or_path) / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def describe(moe: MoePlan) -> str:
    """The plan as a person reads it: each expert's band, SNR range and handover."""
    from expertune.schedule.noise import alphas_cumprod

    cfg = moe.experts[0]
    alphas = alphas_cumprod(_scheduler_config(cfg), cfg.rescale_betas_zero_snr)
    T = moe.plan.num_train_timesteps
    lines = [f"moe plan ({moe.source}): {len(moe.plan)} experts over T={T}, -> {moe.output_root}"]
    for position, name in enumerate(moe.names):
        band = moe.plan.bands[moe.band_index(position)]
        hi_snr, lo_snr = (_snr(alphas[t]) for t in (band.lo, band.hi))
        end = 1 - band.lo / T
        lines.append(
            f"  {name:<12} t {band.lo:>4}..{band.hi:<4}  SNR {lo_snr:.4g}..{hi_snr:.4g}  "
            f"denoising_end {end:.4g}" + (" (last)" if band.lo == 0 else "")
        )
    if moe.parent is not None:
        lines.append(
            f"  parent       t    0..{T - 1:<4}  {moe.parent.max_train_steps} steps, trained "
            "first; every expert without its own init_from starts from it"
        )
    if moe.baseline is not None:
        lines.append(
            f"  baseline     t    0..{T - 1:<4}  {moe.baseline.max_train_steps} steps (the "
            "experts' total), for the report's comparison"
        )
    return "\n".join(lines)


def _snr(a: float) -> float:
    return a / (1 - a) if a < 1 else float("inf")


def is_moe_config(path: str | Path) -> bool:
    """Whether `path` is a moe config (a TOML or JSON file with [[experts]])."""
    path = Path(path)
    if path.suffix not in (".toml", ".json") or not path.is_file():
        return False
    try:
        data = _read(path)
    except ConfigError:
        return False
    return isinstance(data.get("experts"), list)


def show_moe(path: str | Path, overrides: list[str] = (), as_json: bool = False) -> str:
    """`config show` of a moe config: the plan, then each run's resolved flags."""
    from expertune.config.show import show_config

    moe = load_moe(path, overrides)
    if as_json:
        runs = {c.expert_name: json.loads(show_config(c, as_json=True)) for c in moe.runs()}
        plan = {"edges": list(moe.plan.edges), "source": moe.source}
        return json.dumps(
            {"output_root": str(moe.output_root), "plan": plan, "runs": runs}, indent=2
        )
    parts = [describe(moe)]
    for cfg in moe.runs():
        parts.append(f"\n[{cfg.expert_name}]\n{show_config(cfg)}")
    return "\n".join(parts)
