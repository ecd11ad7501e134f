"""`expertune demo`: the seed's two-expert workflow, end to end, on the embedded tiny model.

Work dir layout: tiny-model/, data/, cache/, config/, stage1/, stage2/, demo.png.
The configs are real files in the seed's format, so a user can copy them and swap in
MODEL_NAME="segmind/SSD-1B" on a GPU machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

DEMO_STEPS = 40
RESOLUTION = 64

_STAGE1 = """\
# Stage one ("base" expert) of the seed's workflow, on expertune's tiny embedded model.
# On a real machine set MODEL_NAME="segmind/SSD-1B" and LEARNING_RATE=4e-7 as the guide does.
export USE_BITFIT=false
export USE_DORA=false
export MODEL_TYPE="full"
export MODEL_FAMILY="sdxl"
export MODEL_NAME="{model}"
# The tiny model starts from random weights, so it takes a far larger rate than SSD-1B.
export LEARNING_RATE=1e-4
export TRAIN_BATCH_SIZE=4
export GRADIENT_ACCUMULATION_STEPS=1
export USE_GRADIENT_CHECKPOINTING=false
export RESOLUTION={resolution}
export MAX_NUM_STEPS={steps}
export CHECKPOINTING_STEPS={ckpt}
export SEED=42
export DATALOADER_CONFIG="{dataloader}"
export CACHE_DIR="{cache}"
export OUTPUT_DIR="{output}"

# Enable first stage model training
export TRAINER_EXTRA_ARGS="--refiner_training --refiner_training_strength=0.35 --refiner_training_invert_schedule"

# Reparameterise to v-prediction / zero-terminal SNR, identical for both experts.
export TRAINER_EXTRA_ARGS="${{TRAINER_EXTRA_ARGS}} --prediction_type=v_prediction --rescale_betas_zero_snr --training_scheduler_timestep_spacing=trailing"
"""


def _stage2(stage1: str, output: str) -> str:
    """Stage two as the seed says: new OUTPUT_DIR, invert flag swapped for dataset validation."""
    head = stage1.split("# Enable first stage model training")[0]
    head = head.replace('# Stage one ("base" expert)', '# Stage two ("refiner" expert)')
    head = head.replace(head[head.index("export OUTPUT_DIR") :], f'export OUTPUT_DIR="{output}"\n')
    return head + (
        "\n# Train the end of the schedule; validate by partially denoising dataset images.\n"
        'export TRAINER_EXTRA_ARGS="--refiner_training --refiner_training_strength=0.35 '
        '--validation_using_datasets"\n\n'
        "# Same parameterisation as stage one.\n"
        'export TRAINER_EXTRA_ARGS="${TRAINER_EXTRA_ARGS} --prediction_type=v_prediction '
        '--rescale_betas_zero_snr --training_scheduler_timestep_spacing=trailing"\n'
    )


def _dataloader(data: Path, cache: Path) -> list[dict]:
    """A SimpleTuner-shaped dataloader config shared by both stages."""
    return [
        {
            "id": "demo-shapes",
            "type": "local",
            "dataset_type": "image",
            "instance_data_dir": str(data),
            "caption_strategy": "textfile",
            "resolution": RESOLUTION,
            "resolution_type": "pixel",
            "crop": True,
            "crop_style": "center",
            "cache_dir_vae": str(cache / "vae"),
        },
        {
            "id": "text-embeds",
            "type": "local",
            "dataset_type": "text_embeds",
            "default": True,
            "cache_dir": str(cache / "text"),
        },
    ]


def write_configs(work: Path, steps: int) -> tuple[Path, Path]:
    """Write config/stage1.env, config/stage2.env and config/multidatabackend.json."""
    conf = work / "config"
    conf.mkdir(parents=True, exist_ok=True)
    dataloader = conf / "multidatabackend.json"
    dataloader.write_text(json.dumps(_dataloader(work / "data", work / "cache"), indent=2) + "\n")
    stage1 = _STAGE1.format(
        model=work / "tiny-model",
        resolution=RESOLUTION,
        steps=steps,
        ckpt=max(steps // 2, 1),
        dataloader=dataloader,
        cache=work / "cache",
        output=work / "stage1",
    )
    (conf / "stage1.env").write_text(stage1)
    (conf / "stage2.env").write_text(_stage2(stage1, str(work / "stage2")))
    return conf / "stage1.env", conf / "stage2.env"


def run_demo(workdir: str | Path, steps: int | None = None) -> dict:
    """Build, train both stages, generate demo.png; return what was measured."""
    from expertune.config import load_config
    from expertune.data.demo_images import make_demo_images
    from expertune.models.tiny import build_tiny_sdxl
    from expertune.pipeline.chain import ChainRequest, ExpertChain, StageOptions, save_image
    from expertune.train.run import run_training

    work = Path(workdir).resolve()
    steps = steps or DEMO_STEPS
    t0 = time.perf_counter()
    images = make_demo_images(work / "data")
    build_tiny_sdxl(work / "tiny-model", seed=0, calibration_images=_load_all(images))
    stage1_env, stage2_env = write_configs(work, steps)
    print(f"[demo] tiny model and {len(images)} images ready ({time.perf_counter() - t0:.1f}s)")
    results = {}
    for name, env in (("stage1", stage1_env), ("stage2", stage2_env)):
        cfg = load_config(str(env), [])
        print(f"[demo] training {name}: band {list(cfg.expert_band())} from {env}")
        run_training(cfg)
        results[name] = json.loads((Path(cfg.output_dir) / "run_summary.json").read_text())
    chain = ExpertChain(work / "stage1", work / "stage2")
    prompt = "a red circle on a blue background"
    image = chain(
        ChainRequest(
            base=StageOptions(prompt, guidance_scale=9.2, guidance_rescale=0.7),
            refiner=StageOptions(prompt, guidance_scale=9.2, guidance_rescale=0.7),
            steps=20,
            height=RESOLUTION,
            width=RESOLUTION,
        )
    )
    save_image(image, work / "demo.png")
    _print_summary(work, results, time.perf_counter() - t0)
    return results


def _load_all(paths):
    from expertune.data.images import load_image

    return [load_image(p) for p in paths]


def _print_summary(work: Path, results: dict, wall: float) -> None:
    print(f"[demo] done in {wall:.1f}s; everything is in {work}")
    for name, r in results.items():
        print(
            f"  {name}/  band {r['band']}  {r['steps']} steps  {r['samples_per_s']:.1f} samples/s  "
            f"cache hits {r['cache_hits']} misses {r['cache_misses']}  "
            f"encoder passes {r['encoder_forward_passes']}"
        )
    print("  config/stage1.env, config/stage2.env  (the seed's format; copy and edit)")
    print("  demo.png  (stage one then stage two, handing over at 0.65)")
    print(
        "  try: expertune generate --base "
        f"{work / 'stage1'} --refiner {work / 'stage2'} --prompt 'a green square' --out x.png"
    )
