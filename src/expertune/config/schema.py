"""TrainConfig: the one frozen, validated object every room below config/ receives.

Field names are SimpleTuner's flag names, so a flag, a JSON/TOML key and a field are the
same word. Sources and env names live in sources.py and names.py; this module only says
what a valid configuration is.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from expertune.errors import ConfigError
from expertune.schedule.bands import BandPlan

SDXL_TRAIN_TIMESTEPS = 1000


class TrainConfig(BaseModel):
    """Everything one training job needs; built by ``expertune.config.load_config``."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # model
    model_type: Literal["full", "lora"] = "full"  # train every weight, or a LoRA adapter
    model_family: Literal["sdxl", "sdxl-refiner"] = "sdxl"  # SDXL (SSD-1B, ...) or its refiner
    pretrained_model_name_or_path: str  # hub name, local diffusers folder or single file
    init_from: str | None = None  # start the UNet from a trained parent (models/parent.py)
    use_bitfit: bool = False  # train only biases (not implemented yet)
    use_dora: bool = False  # weight-decomposed LoRA (not implemented yet)
    lora_rank: int = Field(16, ge=1)
    lora_alpha: float | None = None  # None = lora_rank
    lora_type: Literal["standard", "lycoris"] = "standard"  # PEFT LoRA, or LyCORIS
    lycoris_config: str | None = None  # LyCORIS JSON (algo lokr/loha/locon...) for lycoris
    base_model_precision: Literal[
        "no_change", "int8-quanto", "int4-quanto", "int2-quanto", "fp8-quanto"
    ] = "no_change"  # adapters only: the frozen base UNet quantised (models/quantize.py)
    quantize_via: Literal["cpu", "accelerator"] = "accelerator"  # where the base is quantised
    controlnet: bool = False  # train a ControlNet beside the frozen UNet (models/controlnet.py)
    controlnet_model_name_or_path: str | None = None  # start from this diffusers ControlNet
    # optimisation
    learning_rate: float = Field(1e-6, gt=0)
    optimizer: Literal["adamw", "adamw_bf16", "adamw8bit", "prodigy", "lion", "adafactor"] = (
        "adamw"  # see train/optimizers.py
    )
    lr_scheduler: Literal[
        "constant",
        "constant_with_warmup",
        "linear",
        "cosine",
        "cosine_with_restarts",
        "polynomial",
    ] = "constant"
    lr_warmup_steps: int = Field(0, ge=0)  # with constant: constant_with_warmup (warned)
    lr_num_cycles: int = Field(1, ge=1)  # cosine_with_restarts: hard restarts
    lr_power: float = Field(1.0, gt=0)  # polynomial: decay power (1 = linear to 1e-7)
    loss_type: Literal["l2", "huber", "smooth_l1"] = "l2"  # SimpleTuner's pseudo-Huber losses
    huber_c: float = Field(0.1, gt=0, le=1)  # Huber constant (SimpleTuner's default)
    huber_schedule: Literal["snr", "exponential", "constant"] = "snr"  # c over timesteps
    train_batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    gradient_checkpointing: bool = False
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    torch_compile: bool = False  # torch.compile the UNet in place (names and saves unchanged)
    torch_compile_backend: Literal["inductor", "eager", "aot_eager", "cudagraphs"] = "inductor"
    max_grad_norm: float = Field(1.0, ge=0)  # 0 = no clipping
    use_ema: bool = False  # EMA of the trained weights: validated and published (train/ema.py)
    ema_decay: float = Field(0.995, gt=0, lt=1)  # SimpleTuner's default
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_weight_decay: float = Field(1e-2, ge=0)
    adam_epsilon: float = Field(1e-8, gt=0)
    max_train_steps: int | None = Field(None, ge=1)  # when set, overrides num_train_epochs
    num_train_epochs: int = Field(1, ge=1)
    seed: int = Field(42, ge=0, lt=2**63)  # generators take 64 bits; offsets are added
    # outputs and checkpoints
    output_dir: str = "output"
    cache_dir: str = "cache"  # latents and text embeddings, shared between experts
    checkpointing_steps: int = Field(500, ge=0)  # 0 = only at the end
    checkpoints_total_limit: int | None = Field(None, ge=1)
    resume_from_checkpoint: str | None = None  # "latest" or a checkpoint folder
    logging_steps: int = Field(10, ge=1)  # loss synced to host, metrics.jsonl flushed
    report_to: Literal["tensorboard", "wandb", "none"] = "tensorboard"
    tracker_project_name: str = "expertune"  # wandb project (SimpleTuner's name)
    tracker_run_name: str | None = None  # wandb run name; None: wandb picks one
    # hub (issue 9): checked before training, uploaded after publishing (train/hub.py)
    push_to_hub: bool = False  # upload the published expert with a model card
    hub_model_id: str | None = None  # the hub repo, e.g. me/my-expert
    push_checkpoints_to_hub: bool = False  # also upload each checkpoint-N/
    # reliability (issue 5)
    skip_nonfinite_steps: int = Field(0, ge=0)  # skip up to N non-finite steps (syncs per step)
    allow_pickle_weights: bool = False  # trust .bin/.ckpt/.pt weights (read weights_only=True)
    # data
    resolution: int = 1024  # pixels, multiple of 8
    data_backend_config: str | None = None  # dataloader JSON (SimpleTuner's multidatabackend)
    instance_data_dir: str | None = None  # a plain image folder, when no dataloader config
    # datasets (issue 3)
    aspect_bucket_alignment: int = Field(64, ge=8)  # bucket sides are multiples of this
    # dataset defaults (issue 9): for datasets of the dataloader config that do not set them
    resolution_type: Literal["pixel", "area", "pixel_area"] | None = None  # None: pixel
    minimum_image_size: float | None = Field(None, ge=0)  # in resolution_type's unit
    caption_dropout_probability: float = Field(0.0, ge=0, lt=1)  # train on "" this often
    vae_batch_size: int = Field(4, ge=1)  # images (and captions) per encoder call when caching
    dataloader_num_workers: int | None = Field(None, ge=0)  # batch readers; None: auto
    # timestep experts and noise schedule
    refiner_training: bool = False  # train one band of a timestep mixture of experts
    refiner_training_strength: float = Field(0.2, gt=0, lt=1)  # fraction of T for the refiner
    refiner_training_invert_schedule: bool = False  # train the base (high-noise) band instead
    # the band plan and this expert's place in it; derived from the three flags above when
    # not given (the seed's way), or set by `expertune moe` for K experts
    band_edges: tuple[int, ...] | None = None  # 0 = e_0 < e_1 < ... < e_K = T
    band_index: int | None = Field(None, ge=0)  # which band, 0 = lowest-noise
    expert_name: str | None = None  # the expert's name in a moe config
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"
    rescale_betas_zero_snr: bool = False
    training_scheduler_timestep_spacing: Literal["leading", "linspace", "trailing"] = "trailing"
    snr_gamma: float | None = Field(None, gt=0)  # min-SNR loss weighting
    noise_offset: float = Field(0.0, ge=0)
    # validation
    validation_steps: int = Field(0, ge=0)  # 0 = no periodic validation
    validation_prompt: str | None = None
    validation_using_datasets: bool = False  # partially denoise dataset images from the edge
    num_validation_images: int = Field(1, ge=1)
    validation_num_inference_steps: int = Field(20, ge=1)
    validation_guidance: float = 7.5
    validation_guidance_rescale: float = Field(0.0, ge=0, le=1)  # 0.7 for zero-SNR models
    validation_seed: int | None = None
    validation_resolution: str | None = None  # "WxH", "N" or a comma list; None: resolution
    validation_negative_prompt: str | None = None  # none by default (SimpleTuner's differs)
    # validation and evaluation (issue 4)
    validation_refiner: str | None = None  # stage two (folder or its OUTPUT_DIR) for stage one
    validation_chain: tuple[str, ...] | None = None  # every band's expert folder (ascending)
    eval_split: float = Field(0.0, ge=0, lt=1)  # fraction of the training images for eval loss
    eval_timesteps: int = Field(10, ge=1)  # eval-loss timesteps, evenly spaced in the band
    eval_full_range: bool = False  # eval loss over [0, T) as well as over the band
    eval_steps_interval: int = Field(0, ge=0)  # 0 = no eval loss
    evaluation_type: Literal["none", "clip"] = "none"  # clip: CLIP score of validation images
    pretrained_evaluation_model_name_or_path: str = "openai/clip-vit-large-patch14-336"

    _sources: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("resolution")
    @classmethod
    def _resolution_multiple_of_8(cls, value: int) -> int:
        if value < 64 or value % 8:
            raise ValueError("must be a multiple of 8 pixels and at least 64, e.g. 1024")
        return value

    @field_validator("band_edges", mode="before")
    @classmethod
    def _edges_from_text(cls, value: object) -> object:
        """Edges as written in a config.env flag: ``0,250,600,1000`` or a JSON list."""
        if isinstance(value, str):
            text = value.strip().strip("[]")
            try:
                return tuple(int(part) for part in text.split(",") if part.strip())
            except ValueError:
                raise ValueError("must be whole timesteps like 0,250,600,1000") from None
        return value

    @field_validator("validation_chain", mode="before")
    @classmethod
    def _folders_from_text(cls, value: object) -> object:
        """Folders as written in a flag: ``low,mid,high`` (a list is accepted too)."""
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("validation_prompt", mode="before")
    @classmethod
    def _prompt_or_json_list(cls, value: object) -> object:
        """One prompt, or several as a JSON list in the one string (a list is accepted too)."""
        if isinstance(value, list | tuple):
            value = json.dumps(list(value))
        if isinstance(value, str) and value.lstrip().startswith("["):
            _json_prompts(value)
        return value

    @field_validator("validation_resolution", mode="before")
    @classmethod
    def _sizes_text(cls, value: object) -> object:
        """A list of sizes is accepted as well as SimpleTuner's comma-separated text."""
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        if isinstance(value, int):
            value = str(value)
        if isinstance(value, str):
            _validation_sizes(value)
        return value

    @property
    def validation_sizes(self) -> tuple[tuple[int, int], ...]:
        """(height, width) of each validation size; one square at --resolution by default."""
        if not self.validation_resolution:
            return ((self.resolution, self.resolution),)
        return _validation_sizes(self.validation_resolution)

    @property
    def validation_prompts(self) -> tuple[str, ...]:
        """The validation prompts: none, the one prompt, or each of a JSON list."""
        value = self.validation_prompt
        if value is None:
            return ()
        return _json_prompts(value) if value.lstrip().startswith("[") else (value,)

    @model_validator(mode="after")
    def _cross_field_rules(self) -> TrainConfig:
        for rule in (
            _invert_needs_refiner,
            _lycoris_rules,
            _quantised_base_rules,
            _controlnet_rules,
            _hub_rules,
            _bitfit_and_dora,
            _plan_and_index,
            _chain_fits_plan,
            _validation_rules,
        ):
            rule(self)
        return self

    def band_plan(self, num_train_timesteps: int = SDXL_TRAIN_TIMESTEPS) -> BandPlan:
        """The plan this job belongs to (``band_edges``), for a model of T timesteps.

        A plan from the seed's strength is re-derived for another T; explicit edges must
        end at the model's T.
        """
        edges = self.band_edges or (0, SDXL_TRAIN_TIMESTEPS)
        if edges[-1] == num_train_timesteps:
            return BandPlan(edges)
        if self.refiner_training:
            return BandPlan.from_strength(self.refiner_training_strength, num_train_timesteps)
        if len(edges) == 2:
            return BandPlan.single(num_train_timesteps)
        raise ConfigError(
            f"band_edges {list(edges)} end at {edges[-1]}, but the model has "
            f"{num_train_timesteps} training timesteps; give edges that end at "
            f"{num_train_timesteps}"
        )

    def expert_band(self, num_train_timesteps: int = SDXL_TRAIN_TIMESTEPS) -> tuple[int, int]:
        """Lowest and highest training timestep (inclusive) this expert trains."""
        band = self.band_plan(num_train_timesteps).bands[self.band_index or 0]
        return band.lo, band.hi

    def as_flags(self) -> dict[str, Any]:
        """Every field as a JSON-able dict keyed by field (= flag) name."""
        return self.model_dump(mode="json")

    def sources(self) -> dict[str, str]:
        """Where each value the user set came from, e.g. ``LEARNING_RATE (config.env:9)``."""
        return dict(self._sources)

    # Equality and hashing look at the fields only, not at where they came from.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TrainConfig):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(tuple(self.model_dump().items()))


def _invert_needs_refiner(cfg: TrainConfig) -> None:
    if cfg.refiner_training_invert_schedule and not cfg.refiner_training:
        raise ConfigError(
            "--refiner_training_invert_schedule needs --refiner_training: add "
            "--refiner_training (and --refiner_training_strength) or drop the invert flag"
        )


def _hub_rules(cfg: TrainConfig) -> None:
    if cfg.push_to_hub and not cfg.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id (the repo, e.g. me/my-expert)")
    if cfg.push_checkpoints_to_hub and not cfg.push_to_hub:
        raise ConfigError("--push_checkpoints_to_hub needs --push_to_hub (and --hub_model_id)")


def _lycoris_rules(cfg: TrainConfig) -> None:
    if cfg.lora_type == "lycoris" and cfg.model_type != "lora":
        raise ConfigError(
            "--lora_type=lycoris trains an adapter and needs MODEL_TYPE=lora (--model_type=lora)"
        )
    if cfg.lora_type == "lycoris" and not cfg.lycoris_config:
        raise ConfigError("--lora_type=lycoris needs --lycoris_config FILE (a LyCORIS JSON)")
    if cfg.lora_type == "lycoris" and cfg.use_dora:
        raise ConfigError("--use_dora is a PEFT LoRA option; drop it with --lora_type=lycoris")


def _quantised_base_rules(cfg: TrainConfig) -> None:
    if cfg.base_model_precision != "no_change" and cfg.model_type != "lora":
        raise ConfigError(
            f"--base_model_precision={cfg.base_model_precision} freezes the base UNet and "
            "needs MODEL_TYPE=lora (--model_type=lora); full training keeps no_change"
        )


def _controlnet_rules(cfg: TrainConfig) -> None:
    """ControlNet training: a PEFT LoRA on the ControlNet, or the whole ControlNet."""
    if cfg.controlnet_model_name_or_path and not cfg.controlnet:
        raise ConfigError(
            "--controlnet_model_name_or_path needs --controlnet=true; set it or drop the path"
        )
    if not cfg.controlnet:
        return
    refused = {
        "--lora_type=lycoris": cfg.lora_type == "lycoris",
        f"--base_model_precision={cfg.base_model_precision}": (
            cfg.base_model_precision != "no_change"
        ),
        "--init_from": cfg.init_from is not None,
        "--use_ema": cfg.use_ema,
        "--validation_using_datasets": cfg.validation_using_datasets,
        "--validation_refiner": cfg.validation_refiner is not None,
        "--validation_chain": cfg.validation_chain is not None,
        "--eval_steps_interval": cfg.eval_steps_interval > 0,
        "--evaluation_type=clip": cfg.evaluation_type != "none",
    }
    for flag, on in refused.items():
        if on:
            raise ConfigError(
                f"{flag} does not combine with --controlnet=true yet; drop it to train a "
                "ControlNet (PEFT LoRA with --model_type=lora, or the whole ControlNet)"
            )


def _bitfit_and_dora(cfg: TrainConfig) -> None:
    if cfg.use_dora and cfg.model_type != "lora":
        raise ConfigError(
            "DoRA needs MODEL_TYPE=lora (--model_type=lora); set USE_DORA=false for full training"
        )
    if cfg.use_dora:
        raise ConfigError(
            "USE_DORA=true (--use_dora) is not implemented yet in expertune; "
            "set USE_DORA=false to train a plain LoRA"
        )
    if cfg.use_bitfit and cfg.model_type == "lora":
        raise ConfigError(
            "USE_BITFIT=true (--use_bitfit) trains the full model's biases and does not "
            "combine with MODEL_TYPE=lora; set USE_BITFIT=false"
        )
    if cfg.use_bitfit:
        raise ConfigError(
            "USE_BITFIT=true (--use_bitfit) is not implemented yet in expertune; "
            "set USE_BITFIT=false to train every weight"
        )


def _plan_and_index(cfg: TrainConfig) -> None:
    """Map the seed's three flags onto plan + index once, here; check a given plan.

    After this, nothing below config/ needs the flags: ``band_edges`` and ``band_index``
    say which band this expert trains. (The model is frozen, so the derived values are
    written with object.__setattr__, once, during validation.)
    """
    if cfg.band_edges is None:
        if cfg.refiner_training:
            plan = BandPlan.from_strength(cfg.refiner_training_strength, SDXL_TRAIN_TIMESTEPS)
            index = 1 if cfg.refiner_training_invert_schedule else 0
        else:
            plan, index = BandPlan.single(SDXL_TRAIN_TIMESTEPS), 0
        if cfg.band_index not in (None, index):
            raise ConfigError(
                f"--band_index={cfg.band_index} needs --band_edges; set both, or drop "
                "--band_index and use --refiner_training flags"
            )
        object.__setattr__(cfg, "band_edges", plan.edges)
        object.__setattr__(cfg, "band_index", index)
        return
    if cfg.refiner_training:
        raise ConfigError(
            "--band_edges and --refiner_training both set the band plan; keep one of them"
        )
    plan = BandPlan.from_edges(cfg.band_edges, cfg.band_edges[-1])
    object.__setattr__(cfg, "band_edges", plan.edges)
    if cfg.band_index is None or cfg.band_index >= len(plan):
        raise ConfigError(
            f"--band_index={cfg.band_index} must name one of the {len(plan)} bands of "
            f"--band_edges={list(plan.edges)} (0 = lowest noise .. {len(plan) - 1})"
        )


def _chain_fits_plan(cfg: TrainConfig) -> None:
    """--validation_chain names one expert folder per band of the plan."""
    if cfg.validation_chain is None:
        return
    bands = len(cfg.band_edges) - 1
    if len(cfg.validation_chain) != bands:
        raise ConfigError(
            f"--validation_chain lists {len(cfg.validation_chain)} folders, but the band plan "
            f"has {bands} bands; give one expert folder per band, lowest noise first"
        )


def _json_prompts(text: str) -> tuple[str, ...]:
    try:
        prompts = json.loads(text)
    except json.JSONDecodeError:
        prompts = None
    if not (
        isinstance(prompts, list) and prompts and all(isinstance(p, str) and p for p in prompts)
    ):
        raise ValueError('must be one prompt, or a JSON list of prompts like ["a cat", "a dog"]')
    return tuple(prompts)


def _validation_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """'1024x768,512' -> ((768, 1024), (512, 512)): SimpleTuner's WxH (width first)."""
    sizes = []
    for part in text.replace(" ", "").strip("[]").split(","):
        width, _, height = part.strip("'\"").lower().partition("x")
        try:
            w, h = int(width), int(height or width)
        except ValueError:
            raise ValueError(
                f"{part!r} is not a size: write WxH like 1024x1024, "
                "or several as 1024x1024,768x1344"
            ) from None
        if w < 64 or h < 64 or w % 8 or h % 8:
            raise ValueError(f"{part}: each side must be a multiple of 8 pixels and at least 64")
        sizes.append((h, w))
    return tuple(sizes)


def _validation_rules(cfg: TrainConfig) -> None:
    if cfg.validation_refiner and not cfg.refiner_training_invert_schedule:
        raise ConfigError(
            f"--validation_refiner={cfg.validation_refiner} renders stage one through stage "
            "two, but this job does not train stage one; drop --validation_refiner or add "
            "--refiner_training --refiner_training_invert_schedule"
        )
    if cfg.evaluation_type == "clip" and not (
        cfg.validation_prompt or cfg.validation_using_datasets
    ):
        raise ConfigError(
            "--evaluation_type=clip scores validation images, and none are made: set "
            "VALIDATION_PROMPT or --validation_using_datasets"
        )
