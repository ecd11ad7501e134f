"""Setup stages of a training run: accelerator, model, data, optimizer, output dir.

Each returns plain objects; the Trainer in loop.py wires them together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from expertune.config.schema import TrainConfig
from expertune.errors import ConfigError

log = logging.getLogger(__name__)


def setup_output_dir(output_dir: Path) -> None:
    """Create OUTPUT_DIR; a path that exists as a file is a user error."""
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"OUTPUT_DIR {output_dir} is a file; point OUTPUT_DIR at a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"OUTPUT_DIR {output_dir} cannot be created ({exc.strerror})") from exc


def has_gpu() -> bool:
    """Whether this machine has a GPU accelerate trains on (CUDA or Apple's MPS)."""
    return torch.cuda.is_available() or torch.backends.mps.is_available()


def check_precision(cfg: TrainConfig, gpu: bool | None = None) -> None:
    """Refuse --mixed_precision=fp16 without a GPU: accelerate would train in fp32 there,
    silently (its fp16 autocast and gradient scaler are GPU-only); bf16 runs on CPU."""
    if cfg.mixed_precision == "fp16" and not (has_gpu() if gpu is None else gpu):
        raise ConfigError(
            "--mixed_precision=fp16 needs a GPU (fp16 autocast with a gradient scaler) and "
            "this machine has none; use --mixed_precision=bf16, which runs on the CPU, or no"
        )


def setup_accelerator(cfg: TrainConfig, output_dir: Path):
    """An accelerate Accelerator for this run (devices, mixed precision, processes)."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    return Accelerator(
        # no GPU: say so, so that a distributed launch (torchrun) runs on gloo across
        # processes instead of every process training alone as if it were the only one
        cpu=not has_gpu(),
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        mixed_precision=cfg.mixed_precision,
        project_config=ProjectConfiguration(project_dir=str(output_dir)),
    )


def setup_model(cfg: TrainConfig, parent=None, device=None):
    """Load the family's parts; return (components, unet, trainable params by name).

    With --controlnet the returned module is the ControlNet to train and the UNet, in
    `components.unet`, is frozen.

    `parent` (models.parent.Parent, from --init_from) replaces the UNet's weights before
    any adapter is added, so a LoRA expert's frozen base is the parent's UNet. With
    --base_model_precision the base is quantised next (on `device` when
    --quantize_via=accelerator), still before the adapter, which stays unquantised.
    """
    from expertune.models.load import load_components

    components = load_components(
        cfg.pretrained_model_name_or_path,
        family=cfg.model_family,
        allow_pickle=cfg.allow_pickle_weights,
    )
    unet = components.unet
    if parent is not None:
        from expertune.models.parent import init_unet_from

        init_unet_from(unet, parent)
        log.info("init_from: UNet weights from %s (%s)", parent.path, parent.kind)
    for module in (components.vae, components.text_encoder, components.text_encoder_2):
        if module is not None:
            module.requires_grad_(False).eval()
    if cfg.base_model_precision != "no_change":  # issue 9: SimpleTuner's quantised base
        from expertune.models.quantize import quantize_base

        if cfg.quantize_via == "accelerator" and device is not None:
            unet.to(device)
        quantize_base(unet, cfg.base_model_precision, compute_dtype(cfg.mixed_precision))
    if cfg.controlnet:  # the trained module is the ControlNet; components.unet stays frozen
        controlnet = setup_controlnet(cfg, unet)
        trainable = {n: p for n, p in controlnet.named_parameters() if p.requires_grad}
        return components, controlnet, trainable
    add_adapter(cfg, unet)
    if cfg.base_model_precision != "no_change":
        from expertune.models.quantize import adapter_to_float32

        adapter_to_float32(unet)
    if cfg.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    trainable = {n: p for n, p in unet.named_parameters() if p.requires_grad}
    return components, unet, trainable


def setup_controlnet(cfg: TrainConfig, unet):
    """Freeze `unet`; the ControlNet to train beside it (models/controlnet.py): a LoRA on
    it with --model_type=lora, else all of it."""
    from expertune.models.controlnet import add_controlnet_lora, make_controlnet

    unet.requires_grad_(False)
    controlnet = make_controlnet(unet, cfg.controlnet_model_name_or_path, cfg.seed)
    if cfg.model_type == "lora":
        add_controlnet_lora(controlnet, cfg.lora_rank, cfg.lora_alpha or cfg.lora_rank, cfg.seed)
    else:
        controlnet.requires_grad_(True)
    if cfg.gradient_checkpointing:  # the frozen UNet too: the backward runs through it
        controlnet.enable_gradient_checkpointing()
        unet.enable_gradient_checkpointing()  # same gradients, fewer kept activations
    return controlnet


def compute_dtype(mixed_precision: str) -> torch.dtype:
    """The dtype autocast computes in under --mixed_precision (fp32 without it)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(mixed_precision, torch.float32)


def add_adapter(cfg: TrainConfig, unet) -> None:
    """The trainable part: a LyCORIS or PEFT LoRA adapter, or (full) every weight."""
    if cfg.model_type == "lora" and cfg.lora_type == "lycoris":  # issue 9
        from expertune.models.lycoris import add_lycoris, read_lycoris_config

        add_lycoris(unet, read_lycoris_config(cfg.lycoris_config), seed=cfg.seed)
    elif cfg.model_type == "lora":
        from expertune.models.lora import add_lora

        unet.requires_grad_(False)
        add_lora(unet, rank=cfg.lora_rank, alpha=cfg.lora_alpha or cfg.lora_rank, seed=cfg.seed)
    else:
        unet.requires_grad_(True)


def unquantised_copy(cfg: TrainConfig, components, parent, trained):
    """`trained`'s adapter on a fresh full-precision base: what a quantised-base run
    publishes, so the quantisation error stays out of the model a user loads.

    The base is loaded again as setup_model loaded it (model, then --init_from), the same
    adapter is added, and the adapter's trained (or EMA) values are copied in by name.
    """
    from expertune.models.load import load_unet

    unet = load_unet(
        components.model_path, cfg.pretrained_model_name_or_path, cfg.allow_pickle_weights
    )
    if parent is not None:
        from expertune.models.parent import init_unet_from

        init_unet_from(unet, parent)
    for p in unet.parameters():
        p.requires_grad_(False)
    add_adapter(cfg, unet)
    values = {n: p.detach() for n, p in trained.named_parameters() if p.requires_grad}
    own = dict(unet.named_parameters())
    missing = sorted(set(values) - set(own))
    if missing:
        raise RuntimeError(f"adapter tensor {missing[0]} has no place on the unquantised base")
    with torch.no_grad():
        for name, value in values.items():
            own[name].copy_(value.to(own[name]))
    return unet


@dataclass
class TrainData:
    """The cached training set, what building it cost and what it left out.

    `dataset` is a data.training_set.TrainingSet (samples grouped by dataset and bucket;
    `dataset.items[i]` describes sample i). `eval_dataset` holds the `dataset_type: "eval"`
    samples (or the `--eval_split` hold-out), never trained on; `validation_dataset` the
    training samples of datasets without `disable_validation`. `skipped` lists (file,
    reason) for everything left out; `caption_fallbacks` the images captioned by their
    file name because their .txt was missing.
    """

    dataset: torch.utils.data.Dataset
    stats: object  # data.encode.EncodeStats
    skipped: list
    fingerprints: dict  # {"vae": ..., "text": ...}: which encoders made the cache entries
    eval_dataset: object = None  # data.encode.CachedDataset or None
    validation_dataset: object = None  # data.encode.CachedDataset
    caption_fallbacks: list = field(default_factory=list)


def dataset_folder(cfg: TrainConfig) -> Path:
    """The first training folder, after checking the dataloader config and that every
    enabled dataset's folder exists (data.training_set.check_datasets; for preflight)."""
    from expertune.data.planning import check_datasets

    return Path(check_datasets(cfg).training[0].instance_data_dir)


def setup_data(cfg: TrainConfig, components, accelerator, hold_out=None) -> TrainData:
    """Scan the datasets and fill the shared caches (no-op for entries already cached).

    The main process builds first, so the others find every entry cached. `hold_out`
    (items -> indices) keeps eval samples out of training; app/ passes it in.
    """
    from expertune.data.training_set import prepare_data

    with accelerator.main_process_first():
        data = prepare_data(
            cfg,
            components,
            global_batch=cfg.train_batch_size * accelerator.num_processes,
            progress=accelerator.is_local_main_process,
            hold_out=hold_out,
        )
    if accelerator.is_main_process:
        log.info("data: %s", data.training.describe())
        summary = data.report.summary()
        if summary:
            log.warning("%s", summary)
    return TrainData(
        dataset=data.training,
        stats=data.stats,
        skipped=data.report.skipped,
        fingerprints=data.fingerprints,
        eval_dataset=data.eval_dataset,
        validation_dataset=data.validation_dataset,
        caption_fallbacks=data.report.caption_fallbacks,
    )


def setup_optimizer(cfg: TrainConfig, trainable: dict, max_steps: int):
    """--optimizer over the trainable parameters and the --lr_scheduler (train/optimizers.py)."""
    from expertune.train.optimizers import build_lr_scheduler, build_optimizer

    optimizer = build_optimizer(cfg, list(trainable.values()))
    return optimizer, build_lr_scheduler(cfg, optimizer, max_steps)
