"""`expertune generate`: K experts through the timestep router (default) or the seed's
two-pipeline chain, or one ordinary model.

Every input is checked before a model loads, each failure one line (exit 2): numbers,
the output path, which experts and in which order (their records say their bands), and
whether the scheduler can sample on their parameterisation. The chain runs instead of the
router when asked (`--chain`), or for two experts the router cannot hold (another
conditioning layout, a different text side, different prompts or guidance on both sides
of 1); the output says which path ran. This module imports no torch at load time:
`expertune --help` builds its parser.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, field
from pathlib import Path

from expertune.errors import ConfigError
from expertune.pipeline.schedulers import SCHEDULER_NAMES

log = logging.getLogger(__name__)

DEFAULT_GUIDANCE_SCALE = "9.2"
DEFAULT_GUIDANCE_RESCALE = "0.7"
DEFAULT_SCHEDULER = "unipc"


class _Defaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default; a help that says its default in words, an on/off flag and an
    option that is simply absent unless given keep their help as written."""

    def _get_help_string(self, action):
        if "default:" in action.help or action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def add_parser(sub) -> argparse.ArgumentParser:
    """The `generate` sub-parser (flags only; nothing heavy is imported)."""
    g = sub.add_parser(
        "generate",
        help="K experts routed by timestep in one pipeline (or the two-pipeline chain)",
        description="Generate one image with timestep experts: --moe, --expert (repeated), "
        "--base/--refiner, or --model for a single model.",
        formatter_class=_Defaults,
    )
    src = g.add_argument_group("experts (give one kind)")
    src.add_argument("--moe", metavar="OUTPUT_ROOT", help="a finished `expertune moe` run")
    src.add_argument(
        "--expert",
        action="append",
        metavar="DIR",
        help="an expert folder; repeat for each, in any order (their records' bands order them)",
    )
    src.add_argument("--base", metavar="DIR", help="stage-one expert (with --refiner)")
    src.add_argument("--refiner", metavar="DIR", help="stage-two expert (with --base)")
    src.add_argument(
        "--model",
        metavar="DIR",
        help="one ordinary SDXL model folder, or a reserved name (expertune/tiny-sdxl-shapes)",
    )
    g.add_argument(
        "--chain",
        action="store_true",
        help="force the two-pipeline chain (denoising_end/denoising_start) instead of the router",
    )
    g.add_argument("--prompt", required=True, help="what to draw")
    g.add_argument(
        "--refiner-prompt", help="stage two's prompt (default: --prompt; another runs the chain)"
    )
    g.add_argument("--negative-prompt", help="default: none")
    g.add_argument("--steps", type=int, default=40, help="denoising steps over all experts")
    g.add_argument(
        "--base-model-power",
        type=float,
        help="--base/--refiner handover as denoising_end, in (0, 1) "
        "(default: 1 - the refiner's trained strength)",
    )
    g.add_argument(
        "--guidance-scale",
        default=DEFAULT_GUIDANCE_SCALE,
        help="one value, or a comma list with one per expert in denoising order",
    )
    g.add_argument(
        "--guidance-rescale",
        default=DEFAULT_GUIDANCE_RESCALE,
        help="in [0, 1]: one value, or a comma list with one per expert in denoising order",
    )
    g.add_argument("--refiner-guidance-scale", type=float, help="default: --guidance-scale")
    g.add_argument("--refiner-guidance-rescale", type=float, help="default: --guidance-rescale")
    g.add_argument(
        "--scheduler",
        default=DEFAULT_SCHEDULER,
        choices=SCHEDULER_NAMES,
        metavar="NAME",
        help=f"the sampler, one of {', '.join(SCHEDULER_NAMES)}",
    )
    g.add_argument("--seed", type=int, default=0, help="the noise seed (CPU generator)")
    g.add_argument("--height", type=int, help="a multiple of 8 (default: the model's size)")
    g.add_argument("--width", type=int, help="a multiple of 8 (default: the model's size)")
    g.add_argument("--device", default="auto", help="cuda, mps, cpu, or auto: the first there is")
    g.add_argument(
        "--offload-idle",
        action="store_true",
        help="router only: keep just the active expert on the accelerator, the rest in CPU memory",
    )
    g.add_argument("--out", default="out.png", help="the image file (.png, .jpg, .webp...)")
    return g


@dataclass
class Plan:
    """What `run` will do, decided from flags and records before any model loads."""

    path: str  # "router", "chain" or "single model"
    why: str = ""
    experts: object = None  # routed.ExpertSet (router, and chain from K=2 records)
    dirs: tuple[Path, ...] = ()  # chain: (base, refiner); single: (model,)
    power: float | None = None
    scales: list[float] = field(default_factory=list)  # denoising order
    rescales: list[float] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)


def run(args) -> int:
    """Check everything, say which path runs, generate, write the image atomically."""
    numbers = check_numbers(args)
    out = check_out(args.out)
    plan = make_plan(args, *numbers)
    device = _device(args)
    from expertune.pipeline.chain import save_image

    print(f"path: {plan.path}" + (f" ({plan.why})" if plan.why else ""))
    image = _generate(plan, args, device)
    print(f"wrote {save_image(image, out)}")
    return 0


def check_numbers(args) -> tuple[list[float], list[float]]:
    """Sizes, steps, handover and guidance, each refused in one line; guidance lists parsed."""
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and (value <= 0 or value % 8):
            raise ConfigError(
                f"--{name} {value} must be a positive multiple of 8 (e.g. {max(8, value // 8 * 8)})"
            )
    if args.steps < 1:
        raise ConfigError(f"--steps {args.steps} must be at least 1")
    power = args.base_model_power
    if power is not None and not 0.0 < power < 1.0:
        raise ConfigError(
            f"--base-model-power {power} must lie strictly between 0 and 1 (the fraction of "
            "the steps the base denoises before the refiner takes over)"
        )
    scales = _floats("--guidance-scale", args.guidance_scale)
    rescales = _floats("--guidance-rescale", args.guidance_rescale)
    for value in [*scales, args.refiner_guidance_scale]:
        if value is not None and value < 0:
            raise ConfigError(f"guidance scale {value:g} must be at least 0 (1 turns guidance off)")
    for value in [*rescales, args.refiner_guidance_rescale]:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"guidance rescale {value:g} must lie in [0, 1] (0 is off)")
    return scales, rescales


def check_out(out: str) -> Path:
    """An image path PIL can write whose folders can exist (nothing is created yet)."""
    from PIL import Image

    path = Path(out)
    suffix = path.suffix.lower()
    known = Image.registered_extensions()
    if suffix not in known or known[suffix] not in Image.SAVE:
        raise ConfigError(
            f"--out {out}: {suffix or 'no extension'} is not an image type expertune can "
            "write; end the name with .png, .jpg or .webp"
        )
    if path.is_dir():
        raise ConfigError(f"--out {out} is a folder; name an image file inside it")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise ConfigError(f"--out {out}: {parent} is a file, not a folder; pick another path")
    return path


def make_plan(args, scales: list[float], rescales: list[float]) -> Plan:
    """Which experts, in which order, on which path; every refusal happens here."""
    kinds = [k for k in ("moe", "expert", "model") if getattr(args, k)]
    if args.base or args.refiner:
        kinds.append("base/refiner")
    if len(kinds) != 1:
        said = ", ".join(f"--{k}" for k in kinds) or "none"
        raise ConfigError(
            f"give the experts one way: --moe, --expert (repeated), --base with --refiner, "
            f"or --model (got {said})"
        )
    if kinds[0] != "base/refiner":
        for flag in (
            "base_model_power",
            "refiner_prompt",
            "refiner_guidance_scale",
            "refiner_guidance_rescale",
        ):
            if getattr(args, flag) is not None:
                raise ConfigError(
                    f"--{flag.replace('_', '-')} applies to --base/--refiner; experts from "
                    "--moe or --expert hand over at their recorded bands and take comma lists"
                )
    if kinds[0] == "model":
        return _single_plan(args, scales, rescales)
    if kinds[0] == "base/refiner":
        plan = _pair_plan(args, scales, rescales)
    else:
        plan = _set_plan(args, scales, rescales)
    _check_plan_scheduler(plan, args.scheduler)
    if args.offload_idle and plan.path != "router":
        raise ConfigError(
            f"--offload-idle works on the router path; this run takes the {plan.path} "
            f"({plan.why}); drop the flag"
        )
    return plan


def _single_plan(args, scales, rescales) -> Plan:
    from expertune.pipeline.experts import read_expert
    from expertune.pipeline.schedulers import check_scheduler

    if args.chain or args.offload_idle:
        flag = "--chain" if args.chain else "--offload-idle"
        raise ConfigError(f"{flag} needs experts; --model runs one ordinary model")
    info = read_expert(_model_folder(args.model), "--model")
    check_scheduler(args.scheduler, info.parameterisation)
    return Plan(
        "single model",
        dirs=(info.path,),
        scales=_one("--guidance-scale", scales),
        rescales=_one("--guidance-rescale", rescales),
        prompts=[args.prompt],
    )


def _model_folder(model: str) -> Path:
    """--model as a folder: a reserved name becomes the embedded model's folder."""
    from expertune.models.embedded import RESERVED_NAMES, embedded_model_folder

    return embedded_model_folder(model) if model in RESERVED_NAMES else Path(model)


def _set_plan(args, scales, rescales) -> Plan:
    from expertune.pipeline.routed import expert_set, read_manifest

    experts = read_manifest(args.moe) if args.moe else expert_set(args.expert)
    k = len(experts)
    scales, rescales = (
        _per_expert(scales, k, "--guidance-scale"),
        _per_expert(rescales, k, "--guidance-rescale"),
    )
    plan = Plan(
        "router", experts=experts, scales=scales, rescales=rescales, prompts=[args.prompt] * k
    )
    return _choose_path(plan, args.chain)


def _pair_plan(args, scales, rescales) -> Plan:
    from expertune.pipeline.chain import check_base_family, default_power
    from expertune.pipeline.experts import check_same_parameterisation, read_expert

    if not (args.base and args.refiner):
        missing = "--refiner" if args.base else "--base"
        raise ConfigError(f"--base and --refiner go together; add {missing} DIR")
    base, refiner = read_expert(args.base, "--base"), read_expert(args.refiner, "--refiner")
    check_same_parameterisation([base, refiner])
    check_base_family(base)
    _check_not_swapped(base, refiner)
    power = (
        args.base_model_power if args.base_model_power is not None else default_power(base, refiner)
    )
    scales, rescales = _pair_guidance(args, scales, rescales)
    prompts = [args.prompt, args.refiner_prompt or args.prompt]
    plan = Plan(
        "router",
        dirs=(base.path, refiner.path),
        power=power,
        scales=scales,
        rescales=rescales,
        prompts=prompts,
    )
    if base.band is None or refiner.band is None:
        plan.path, plan.why = "chain", "the experts record no bands to route by"
        return plan
    plan.experts = _pair_set(base, refiner, power)
    if prompts[0] != prompts[1]:
        plan.path, plan.why = "chain", "--refiner-prompt differs from --prompt"
        return plan
    return _choose_path(plan, args.chain)


def _pair_set(base, refiner, power: float):
    """The pair as an ExpertSet handing over where --base-model-power says (warned if off-band)."""
    from expertune.pipeline.routed import Expert, ExpertSet
    from expertune.schedule.bands import Band, diffusers_cutoff

    total = base.num_train_timesteps
    cutoff = diffusers_cutoff(power, total)
    if not 0 < cutoff < total:
        raise ConfigError(
            f"--base-model-power {power} hands over at t={cutoff}, leaving one expert no "
            f"timesteps of [0, {total - 1}]; use a value nearer 0.5"
        )
    if cutoff - 1 > refiner.band.hi:
        log.warning(
            "warning: --base-model-power %s hands the refiner timesteps up to %d, but it was "
            "trained on %s only",
            power,
            cutoff - 1,
            refiner.band,
        )
    elif cutoff < base.band.lo:
        log.warning(
            "warning: --base-model-power %s hands over at t=%d, inside the refiner's trained "
            "band %s: the base then denoises t=%d..%d, below its band %s",
            power,
            cutoff,
            refiner.band,
            cutoff,
            base.band.lo - 1,
            base.band,
        )
    experts = (
        Expert("base", base, Band(cutoff, total - 1)),
        Expert("refiner", refiner, Band(0, cutoff - 1)),
    )
    return ExpertSet(experts, total)


def _check_not_swapped(base, refiner) -> None:
    if base.band is not None and refiner.band is not None and base.band.lo < refiner.band.lo:
        raise ConfigError(
            f"--base {base.path} owns timesteps {base.band} and --refiner {refiner.path} owns "
            f"{refiner.band}: they are swapped (the base denoises the high-noise band first); "
            "exchange the two flags"
        )


def _choose_path(plan: Plan, force_chain: bool) -> Plan:
    """Router unless asked or unable; the chain holds only two experts."""
    from expertune.pipeline.routed import router_blockers

    k = len(plan.experts)
    why = "--chain" if force_chain else router_blockers(plan.experts)
    if why is None and len({s > 1 for s in plan.scales}) > 1:
        why = f"guidance scales {plan.scales} lie on both sides of 1"
    if why is None:
        plan.why = plan.experts.describe()
        return plan
    if k != 2:
        raise ConfigError(
            f"{k} experts need the router, which cannot run them: {why}; the two-pipeline "
            "chain holds exactly two experts"
        )
    base, refiner = plan.experts.experts
    plan.path, plan.why = "chain", why
    plan.dirs = (base.info.path, refiner.info.path)
    if plan.power is None:
        plan.power = round(1 - base.band.lo / plan.experts.num_train_timesteps, 6)
    return plan


def _check_plan_scheduler(plan: Plan, scheduler: str) -> None:
    from expertune.pipeline.experts import check_same_parameterisation, read_expert
    from expertune.pipeline.schedulers import check_scheduler

    if plan.experts is not None:
        param = plan.experts.parameterisation
    else:
        param = check_same_parameterisation([read_expert(d, "expert") for d in plan.dirs])
    check_scheduler(scheduler, param)


def _pair_guidance(args, scales, rescales):
    """[base, refiner] guidance: two-value lists, or one value with the --refiner-* flags."""
    out = []
    for flag, values, override in (
        ("--guidance-scale", scales, args.refiner_guidance_scale),
        ("--guidance-rescale", rescales, args.refiner_guidance_rescale),
    ):
        if len(values) == 2 and override is not None:
            raise ConfigError(
                f"{flag} lists two values and --refiner-{flag[2:]} gives another; use one of them"
            )
        values = _per_expert(values, 2, flag)
        if override is not None:
            values[1] = override
        out.append(values)
    return out


def _generate(plan: Plan, args, device: str):
    import torch

    if plan.path == "chain":
        return _generate_chain(plan, args, device)
    if plan.path == "single model":
        pipe = _single_pipeline(plan.dirs[0], args.scheduler, device)
    else:
        from expertune.pipeline.routed import load_routed_pipeline, set_expert_guidance

        pipe = load_routed_pipeline(
            plan.experts, scheduler=args.scheduler, device=device, offload_idle=args.offload_idle
        )
        set_expert_guidance(pipe, plan.scales, plan.rescales)
    return pipe(
        prompt=plan.prompts[0],
        negative_prompt=args.negative_prompt,
        num_inference_steps=args.steps,
        guidance_scale=plan.scales[0],
        guidance_rescale=plan.rescales[0],
        height=args.height,
        width=args.width,
        generator=torch.Generator().manual_seed(args.seed),
    ).images[0]


def _generate_chain(plan: Plan, args, device: str):
    from expertune.pipeline.chain import ChainRequest, ExpertChain, StageOptions

    stages = [
        StageOptions(prompt, scale, rescale, args.negative_prompt)
        for prompt, scale, rescale in zip(plan.prompts, plan.scales, plan.rescales, strict=True)
    ]
    chain = ExpertChain(*plan.dirs, scheduler=args.scheduler, device=device)
    request = ChainRequest(
        base=stages[0],
        refiner=stages[1],
        steps=args.steps,
        base_model_power=plan.power,
        seed=args.seed,
        height=args.height,
        width=args.width,
        scheduler=args.scheduler,
    )
    return chain(request)


def _single_pipeline(folder: Path, scheduler: str, device: str):
    from diffusers import StableDiffusionXLPipeline

    from expertune.models.load import no_progress_bars
    from expertune.pipeline.schedulers import make_scheduler

    with no_progress_bars():
        pipe = StableDiffusionXLPipeline.from_pretrained(
            folder, use_safetensors=True, add_watermarker=False
        )
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(leave=False)
    return pipe.to(device)


def _device(args) -> str:
    """--device, with auto resolved; --offload-idle needs an accelerator to offload from."""
    import torch

    device = args.device
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    if args.offload_idle and device == "cpu":
        raise ConfigError(
            "--offload-idle keeps idle experts in CPU memory while the active one runs on an "
            "accelerator, and this run has none (--device cpu); drop the flag"
        )
    return device


def _floats(flag: str, text: str) -> list[float]:
    try:
        values = [float(v) for v in str(text).split(",")]
    except ValueError:
        raise ConfigError(f"{flag} {text} must be a number or a comma list of numbers") from None
    return values


def _one(flag: str, values: list[float]) -> list[float]:
    if len(values) != 1:
        raise ConfigError(f"{flag} lists {len(values)} values but --model runs one model; give one")
    return values


def _per_expert(values: list[float], k: int, flag: str) -> list[float]:
    if len(values) == 1:
        return values * k
    if len(values) != k:
        raise ConfigError(f"{flag} lists {len(values)} values for {k} experts; give one or {k}")
    return list(values)
