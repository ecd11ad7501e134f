"""`expertune demo`: the seed's two-expert workflow, end to end, on a pretrained tiny parent.

As in the seed, both experts are fine-tuned from a pretrained model: the embedded
`expertune/tiny-sdxl-shapes`, which draws circles, squares and triangles in the colours
its prompt names. The demo teaches its experts shapes the parent never saw (diamonds and
plus signs, `data/shape_images.DEMO_SHAPES`), so the pictures show what each stage
learned. Work dir layout: data/ (training images), eval/ (held-out images), cache/,
config/, stage1/, stage2/, single/ (a one-model baseline over all timesteps with the
experts' combined steps), eval-loss/ (experts vs baseline per band), demo.png. The
configs are real files in the seed's format, so a user can copy them and swap in
MODEL_NAME="segmind/SSD-1B" on a GPU machine.

The seed's optional v-prediction / zero-terminal-SNR lines are written commented out: a
100-step fine-tune cannot move an epsilon-pretrained parent to another parameterisation
(the tests run those flags on the random tiny model instead).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

DEMO_STEPS = 100
DEMO_IMAGES = 24
EVAL_TIMESTEPS = 10
RESOLUTION = 64
DEMO_PROMPTS = (
    "a red diamond on a blue background",
    "a yellow plus on a black background",
    "a white diamond on a green background",
    "a cyan plus on a magenta background",
)

_STAGE1 = """\
# Stage one ("base" expert) of the seed's workflow, on expertune's tiny embedded model.
# On a real machine set MODEL_NAME="segmind/SSD-1B" and LEARNING_RATE=4e-7 as the guide does.
export USE_BITFIT=false
export USE_DORA=false
export MODEL_TYPE="full"
export MODEL_FAMILY="sdxl"
export MODEL_NAME="{model}"
# The tiny model is small and trained briefly, so it takes a far larger rate than SSD-1B.
export LEARNING_RATE={learning_rate}
export TRAIN_BATCH_SIZE=4
export GRADIENT_ACCUMULATION_STEPS=1
export USE_GRADIENT_CHECKPOINTING=false
export RESOLUTION={resolution}
export MAX_NUM_STEPS={steps}
export CHECKPOINTING_STEPS={ckpt}
export SEED=42
{validation}export DATALOADER_CONFIG="{dataloader}"
export CACHE_DIR="{cache}"
export OUTPUT_DIR="{output}"

# Enable first stage model training
export TRAINER_EXTRA_ARGS="--refiner_training --refiner_training_strength=0.35 --refiner_training_invert_schedule"

{reparameterise}"""

_REPARAM_FLAGS = (
    'export TRAINER_EXTRA_ARGS="${TRAINER_EXTRA_ARGS} --prediction_type=v_prediction '
    '--rescale_betas_zero_snr --training_scheduler_timestep_spacing=trailing"\n'
)
_REPARAMETERISE = (
    "# Reparameterise to v-prediction / zero-terminal SNR, identical for both experts.\n"
    + _REPARAM_FLAGS
)
_REPARAMETERISE_OFF = (
    "# Optionally reparameterise to v-prediction / zero-terminal SNR (both experts alike);\n"
    "# left off: 100 steps cannot move the epsilon-pretrained parent to another one.\n"
    "# " + _REPARAM_FLAGS
)


def _stage2(stage1: str, output: str, reparameterise: bool = True) -> str:
    """Stage two as the seed says: new OUTPUT_DIR, invert flag swapped for dataset validation."""
    head = stage1.split("# Enable first stage model training")[0]
    head = head.replace('# Stage one ("base" expert)', '# Stage two ("refiner" expert)')
    head = head.replace(head[head.index("export OUTPUT_DIR") :], f'export OUTPUT_DIR="{output}"\n')
    return head + (
        "\n# Train the end of the schedule; validate by partially denoising dataset images.\n"
        'export TRAINER_EXTRA_ARGS="--refiner_training --refiner_training_strength=0.35 '
        '--validation_using_datasets"\n\n'
        + ("# Same parameterisation as stage one.\n" + _REPARAM_FLAGS if reparameterise else "")
    )


def _dataloader(data: Path, held_out: Path | None, cache: Path) -> list[dict]:
    """A SimpleTuner-shaped dataloader config shared by both stages; `held_out` images
    (never trained on) feed the stable eval loss."""
    eval_sets = [] if held_out is None else [_images("demo-eval", "eval", held_out, cache)]
    return [
        _images("demo-shapes", "image", data, cache),
        *eval_sets,
        {
            "id": "text-embeds",
            "type": "local",
            "dataset_type": "text_embeds",
            "default": True,
            "cache_dir": str(cache / "text"),
        },
    ]


def _images(name: str, dataset_type: str, folder: Path, cache: Path) -> dict:
    return {
        "id": name,
        "type": "local",
        "dataset_type": dataset_type,
        "instance_data_dir": str(folder),
        "caption_strategy": "textfile",
        "resolution": RESOLUTION,
        "resolution_type": "pixel",
        "crop": True,
        "crop_style": "center",
        "cache_dir_vae": str(cache / "vae"),
    }


_VALIDATION = """\
export VALIDATION_STEPS={steps}
export VALIDATION_PROMPT="{prompt}"
"""


_EVAL_LOSS = """
# Stable eval loss on the held-out images (fixed noise, timesteps spread over the band).
export TRAINER_EXTRA_ARGS="${{TRAINER_EXTRA_ARGS}} --eval_steps_interval={interval} --eval_full_range"
"""


def write_configs(
    work: Path,
    steps: int,
    *,
    held_out: Path | None = None,
    validation: bool = False,
    model: str | None = None,  # default: the random tiny model built into work/tiny-model
    reparameterise: bool = True,  # the seed's optional v-prediction / zero-terminal SNR
    learning_rate: str = "1e-4",
    prompt: str = "a red circle on a blue background",
) -> tuple[Path, Path]:
    """Write config/stage1.env, config/stage2.env and config/multidatabackend.json.

    `held_out` adds an eval dataset (for the stable eval loss); `validation` adds a
    validation prompt rendered at the last step.
    """
    conf = work / "config"
    conf.mkdir(parents=True, exist_ok=True)
    dataloader = conf / "multidatabackend.json"
    dataloader.write_text(
        json.dumps(_dataloader(work / "data", held_out, work / "cache"), indent=2) + "\n"
    )
    stage1 = _STAGE1.format(
        model=model or work / "tiny-model",
        learning_rate=learning_rate,
        reparameterise=_REPARAMETERISE if reparameterise else _REPARAMETERISE_OFF,
        resolution=RESOLUTION,
        steps=steps,
        validation=_VALIDATION.format(steps=steps, prompt=prompt) if validation else "",
        ckpt=max(steps // 2, 1),
        dataloader=dataloader,
        cache=work / "cache",
        output=work / "stage1",
    )
    stage2 = _stage2(stage1, str(work / "stage2"), reparameterise)
    eval_loss = "" if held_out is None else _EVAL_LOSS.format(interval=max(steps // 4, 1))
    (conf / "stage1.env").write_text(stage1 + eval_loss)
    (conf / "stage2.env").write_text(stage2 + eval_loss)
    return conf / "stage1.env", conf / "stage2.env"


def prepare_workdir(
    work: Path,
    steps: int,
    *,
    images: int = 12,
    held_out: int = 0,
    size: int = 96,
    validation: bool = False,
) -> tuple[Path, Path]:
    """data/ (and eval/), the tiny model calibrated on those images, and the two configs."""
    from expertune.data.demo_images import make_demo_images
    from expertune.models.tiny import build_tiny_sdxl

    paths = make_demo_images(work / "data", n=images, size=size)
    eval_dir = None
    if held_out:
        eval_dir = work / "eval"
        make_demo_images(eval_dir, n=held_out, size=size, seed=1)
    build_tiny_sdxl(work / "tiny-model", seed=0, calibration_images=_load_all(paths))
    return write_configs(work, steps, held_out=eval_dir, validation=validation)


def prepare_demo(work: Path, steps: int) -> tuple[Path, Path]:
    """data/ and eval/ in the demo's new domain, and the two configs on the shapes parent."""
    from expertune.data.shape_images import ALL_PAIRS, DEMO_SHAPES, sample_specs
    from expertune.data.shape_images import write_shape_dataset as write
    from expertune.models.embedded import SHAPES_MODEL_NAME

    write(work / "data", sample_specs(DEMO_IMAGES, seed=1, shapes=DEMO_SHAPES), RESOLUTION)
    held_out = sample_specs(4, seed=2, pairs=ALL_PAIRS, shapes=DEMO_SHAPES)
    write(work / "eval", held_out, RESOLUTION)
    return write_configs(
        work,
        steps,
        held_out=work / "eval",
        validation=True,
        model=SHAPES_MODEL_NAME,
        reparameterise=False,
        learning_rate="2e-4",
        prompt=DEMO_PROMPTS[0],
    )


def run_demo(workdir: str | Path, steps: int | None = None) -> dict:
    """Fine-tune both stages and the baseline from the parent, compare per band, draw demo.png."""
    from expertune.app.train import train_expert
    from expertune.config import load_config

    work = Path(workdir).resolve()
    steps = steps or DEMO_STEPS
    t0 = time.perf_counter()
    stage1_env, stage2_env = prepare_demo(work, steps)
    print(f"[demo] images and configs ready ({time.perf_counter() - t0:.1f}s)")
    runs = {
        "stage1": (stage1_env, []),
        "stage2": (stage2_env, []),
        "single": (stage1_env, _baseline_flags(work, steps)),
    }
    results = {}
    for name, (env, flags) in runs.items():
        cfg = load_config(str(env), flags)
        print(
            f"[demo] training {name}: band {list(cfg.expert_band())} from {env} {' '.join(flags)}"
        )
        train_expert(cfg)
        results[name] = json.loads((Path(cfg.output_dir) / "run_summary.json").read_text())
    comparison = _compare(work, load_config(str(stage2_env), []))
    colours = _render(work)
    _print_summary(work, results, comparison, colours, time.perf_counter() - t0)
    return {"runs": results, "eval_loss": comparison, "colour_accuracy": colours}


def _baseline_flags(work: Path, steps: int) -> list[str]:
    """Stage one's config as one model over all timesteps, with the experts' total steps."""
    return [
        "--refiner_training=false",
        "--refiner_training_invert_schedule=false",
        f"--max_train_steps={2 * steps}",
        f"--checkpointing_steps={steps}",
        f"--validation_steps={2 * steps}",
        f"--output_dir={work / 'single'}",
    ]


def _compare(work: Path, data_cfg) -> dict:
    """Eval loss per band: each expert on its band, the baseline on both (same noise)."""
    from expertune.app.evaluate import evaluate_models, table
    from expertune.evaluate.plots import compare_bands
    from expertune.evaluate.records import write_json

    result = evaluate_models(
        [str(work / "stage1"), str(work / "stage2")], str(work / "single"), data_cfg, EVAL_TIMESTEPS
    )
    out = work / "eval-loss"
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "eval_loss.json", result)
    compare_bands(result, out / "eval_loss.png")
    print(table(result))
    return result


def _render(work: Path) -> dict:
    """demo.png: a row per model (the parent, the single baseline, stage one then stage two
    handing over at 1 - strength as the seed's snippet), a column per DEMO_PROMPTS entry.

    Returns each row's prompt-colour accuracy over those prompts.
    """
    from expertune.evaluate.colour_check import colour_accuracy
    from expertune.evaluate.images import grid
    from expertune.models.embedded import shapes_model_folder
    from expertune.pipeline.chain import ChainRequest, ExpertChain, StageOptions, save_image

    size = {"height": RESOLUTION, "width": RESOLUTION}
    chain = ExpertChain(work / "stage1", work / "stage2")
    rows = {"chain": []}
    for prompt in DEMO_PROMPTS:
        stage = StageOptions(prompt, guidance_scale=9.2, guidance_rescale=0.7)
        rows["chain"].append(chain(ChainRequest(base=stage, refiner=stage, steps=20, **size)))
    rows = {"parent": _single(shapes_model_folder()), "single": _single(work / "single")} | rows
    save_image(grid(list(rows.values())), work / "demo.png")
    return {name: colour_accuracy(images, list(DEMO_PROMPTS)) for name, images in rows.items()}


def _single(folder: Path) -> list:
    """DEMO_PROMPTS drawn by one model folder (20 steps, the chain's guidance and seed)."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    from expertune.io import no_progress_bars

    with no_progress_bars():
        pipe = StableDiffusionXLPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return [
        pipe(
            p,
            num_inference_steps=20,
            guidance_scale=9.2,
            guidance_rescale=0.7,
            generator=torch.Generator().manual_seed(0),
            height=RESOLUTION,
            width=RESOLUTION,
        ).images[0]
        for p in DEMO_PROMPTS
    ]


def _load_all(paths):
    from expertune.data.images import load_image

    return [load_image(p) for p in paths]


def _print_summary(work: Path, results: dict, comparison: dict, colours: dict, wall: float) -> None:
    print(f"[demo] done in {wall:.1f}s; everything is in {work}")
    for name, r in results.items():
        print(
            f"  {name + '/':<8} band {r['band']!s:<11} {r['steps']:>4} steps "
            f"{r['samples_per_s']:>6.1f} samples/s  cache hits {r['cache_hits']:>3} "
            f"misses {r['cache_misses']:>3}  encoder passes {r['encoder_forward_passes']}"
        )
    for row in comparison["bands"]:
        change = row["expert_loss"] / row["baseline_loss"] - 1
        print(
            f"  eval loss on band {row['band']}: expert {row['expert_loss']:.4f} vs single "
            f"model {row['baseline_loss']:.4f} ({change:+.1%})"
        )
    for name, accuracy in colours.items():
        print(f"  prompt-colour accuracy of {name} on the demo prompts: {accuracy:.0%}")
    print("  config/stage1.env, config/stage2.env  (the seed's format; copy and edit)")
    print("  stage1/report.html, stage2/report.html, single/report.html  (open in a browser)")
    print(
        "  eval-loss/eval_loss.png, demo.png  (rows: the parent, the single model, stage one "
        "then stage two handing over at 0.65)"
    )
    print(
        "  try: expertune generate --base "
        f"{work / 'stage1'} --refiner {work / 'stage2'} --prompt 'a green diamond on a red background' --out x.png"
    )
