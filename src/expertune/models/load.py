"""Find a model (local folder or Hugging Face hub name) and load its parts, safetensors only.

Every failure a user can fix is a one-line ModelReferenceError naming MODEL_NAME's value:
a missing path, a folder that is not a diffusers model, another family, a single-file
checkpoint, pickle-only weights, or a hub name that cannot be reached. Offline, a hub
name fails in well under a second instead of waiting for the hub client's retries.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.utils import logging as diffusers_logging
from huggingface_hub import constants, get_session, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer
from transformers.utils import logging as hf_logging

from expertune.errors import ModelReferenceError
from expertune.models.family import detect_family, get_family

CHECKPOINT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin")
PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
OTHER_FORMATS = (".msgpack", ".onnx", ".onnx_data", ".pb", ".h5", ".ot", ".gguf")
FIX = "set MODEL_NAME to a local diffusers folder (one holding model_index.json)"


@dataclass
class Components:
    """The loaded parts of one model; text_encoder and tokenizer are None for a refiner."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel | None
    text_encoder_2: CLIPTextModelWithProjection
    tokenizer: CLIPTokenizer | None
    tokenizer_2: CLIPTokenizer
    scheduler_config: dict
    model_path: Path
    family: str = "sdxl"


def resolve_model_path(
    name: str,
    *,
    offline: bool | None = None,
    cache_dir: str | Path | None = None,
    probe_timeout: float = 3.0,
) -> Path:
    """The local diffusers folder for `name`: a folder, or a hub id (local cache first).

    `offline=None` follows huggingface_hub (HF_HUB_OFFLINE). Online, one short probe of
    the hub decides before any download starts, so an unreachable hub fails fast.
    """
    path = Path(name).expanduser()
    if path.exists():
        return _check_local(path, name)
    if name.lower().endswith(CHECKPOINT_SUFFIXES) or not is_hub_id(name):
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} does not exist (no such file or folder); {FIX}, "
            "or to a Hugging Face model id like 'stabilityai/stable-diffusion-xl-base-1.0'"
        )
    return _from_hub(name, offline=offline, cache_dir=cache_dir, probe_timeout=probe_timeout)


def is_hub_id(name: str) -> bool:
    """Whether `name` is a valid "owner/repo" Hugging Face id."""
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return name.count("/") == 1


def _check_local(path: Path, name: str) -> Path:
    """`path` if it is a diffusers folder; a one-line error for files and other folders."""
    if path.is_file():
        if path.suffix.lower() in CHECKPOINT_SUFFIXES:
            raise ModelReferenceError(
                f"MODEL_NAME {name!r} is a single-file checkpoint; loading single files is "
                "not implemented yet: convert it to a diffusers folder (e.g. diffusers' "
                f"StableDiffusionXLPipeline.from_single_file(...).save_pretrained(dir)) and {FIX}"
            )
        raise ModelReferenceError(f"MODEL_NAME {name!r} is a file, not a model folder; {FIX}")
    if not (path / "model_index.json").is_file():
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} is a folder but not a diffusers model: it has no "
            f"model_index.json; {FIX}"
        )
    return path.resolve()


def _from_hub(
    name: str, *, offline: bool | None, cache_dir: str | Path | None, probe_timeout: float
) -> Path:
    """A cached snapshot of hub repo `name`, downloading it only if the hub answers."""
    try:
        snapshot = snapshot_download(name, local_files_only=True, cache_dir=cache_dir)
        return _check_local(Path(snapshot), name)
    except LocalEntryNotFoundError:
        pass
    offline = constants.HF_HUB_OFFLINE if offline is None else offline
    if offline or not hub_reachable(probe_timeout):
        why = "offline" if offline else f"no answer from {constants.ENDPOINT}"
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} is not a local folder and could not be reached on the "
            f"Hugging Face hub ({why}; not in the local Hugging Face cache); {FIX}"
        )
    try:
        snapshot = snapshot_download(name, cache_dir=cache_dir, allow_patterns=_hub_files(name))
    except (HfHubHTTPError, OSError) as err:
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} could not be downloaded from the Hugging Face hub "
            f"({_first_line(err)}); {FIX}"
        ) from err
    return _check_local(Path(snapshot), name)


def hub_reachable(timeout: float = 3.0) -> bool:
    """One HEAD request to the hub, no retries; DNS that hangs counts as unreachable."""
    answered = threading.Event()

    def probe() -> None:
        try:
            get_session().head(constants.ENDPOINT, timeout=timeout)
            answered.set()
        except Exception:  # any transport failure means "not reachable"
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return answered.is_set()


def _hub_files(name: str) -> list[str]:
    """The files of hub repo `name` that a safetensors diffusers load needs."""
    from huggingface_hub import HfApi

    return select_hub_files(HfApi().list_repo_files(name))


def select_hub_files(files: list[str]) -> list[str]:
    """Configs, tokenizers and safetensors weights, without pickles or single-file checkpoints.

    A folder's variant weights (`*.fp16.safetensors`) are skipped when plain ones exist.
    """
    plain = {f.rpartition("/")[0] for f in files if _is_plain_safetensors(f)}
    return [f for f in files if _wanted(f, plain)]


def _wanted(file: str, folders_with_plain_weights: set[str]) -> bool:
    folder, _, base = file.rpartition("/")
    if not folder:  # top level: single-file checkpoints, README, images
        return base == "model_index.json"
    if base.endswith(PICKLE_SUFFIXES + OTHER_FORMATS):
        return False
    variant = base.endswith(".safetensors") and not _is_plain_safetensors(file)
    return not (variant and folder in folders_with_plain_weights)


def _is_plain_safetensors(filename: str) -> bool:
    """`model.safetensors` or a shard of it; False for variants like `model.fp16.safetensors`."""
    base = filename.rpartition("/")[2]
    return base.endswith(".safetensors") and base.count(".") == 1


def weights_variant(folder: Path, name: str) -> str | None:
    """The diffusers `variant` to load from `folder` (None for plain safetensors).

    Refuses, in one line, folders with only pickle weights: they could run code on load.
    """
    if not folder.is_dir():
        raise ModelReferenceError(f"MODEL_NAME {name!r} has no {folder.name}/ folder; {FIX}")
    safetensors = sorted(p.name for p in folder.glob("*.safetensors"))
    if any(_is_plain_safetensors(f) for f in safetensors):
        return None
    if safetensors:  # e.g. diffusion_pytorch_model.fp16.safetensors
        return safetensors[0].split(".")[1].split("-")[0]
    if any(p.suffix in PICKLE_SUFFIXES for p in folder.iterdir()):
        raise ModelReferenceError(
            f"MODEL_NAME {name!r}: {folder.name}/ holds only pickle weights (.bin/.ckpt), which "
            "expertune refuses to load because unpickling can run code; convert them to "
            "safetensors (load and save_pretrained(..., safe_serialization=True))"
        )
    raise ModelReferenceError(f"MODEL_NAME {name!r}: {folder.name}/ holds no weights; {FIX}")


def read_model_index(path: Path) -> dict:
    """The parsed model_index.json of a diffusers folder."""
    return json.loads((path / "model_index.json").read_text())


def read_scheduler_config(path: Path, name: str) -> dict:
    """scheduler/scheduler_config.json as a dict: the noise schedule the model was trained with."""
    file = path / "scheduler" / "scheduler_config.json"
    try:
        return json.loads(file.read_text())
    except (OSError, ValueError) as err:
        raise ModelReferenceError(
            f"MODEL_NAME {name!r}: scheduler/scheduler_config.json could not be read "
            f"({_first_line(err)}); {FIX}"
        ) from err


def load_components(
    name: str,
    *,
    family: str = "sdxl",
    dtype: torch.dtype = torch.float32,
    offline: bool | None = None,
    cache_dir: str | Path | None = None,
) -> Components:
    """Load the parts of `family` from `name` (see resolve_model_path), safetensors only."""
    fam = get_family(family)
    path = resolve_model_path(name, offline=offline, cache_dir=cache_dir)
    found = detect_family(read_model_index(path), where=f"MODEL_NAME {name!r} (model_index.json)")
    if found != family:
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} is a model of family {found!r}, but family {family!r} is "
            "expected here; point MODEL_NAME at a model of that family"
        )
    has = set(fam.components)
    variants = {part: weights_variant(path / part, name) for part in fam.weight_folders}
    scheduler_config = read_scheduler_config(path, name)

    def weights(cls, part: str, **dtype_arg):
        if part not in has:
            return None
        kwargs = {"use_safetensors": True, "variant": variants[part], **dtype_arg}
        return _load_part(cls, path, part, name, **kwargs)

    return Components(
        unet=weights(UNet2DConditionModel, "unet", torch_dtype=dtype),
        vae=weights(AutoencoderKL, "vae", torch_dtype=dtype),
        text_encoder=weights(CLIPTextModel, "text_encoder", dtype=dtype),
        text_encoder_2=weights(CLIPTextModelWithProjection, "text_encoder_2", dtype=dtype),
        tokenizer=_load_part(CLIPTokenizer, path, "tokenizer", name)
        if "tokenizer" in has
        else None,
        tokenizer_2=_load_part(CLIPTokenizer, path, "tokenizer_2", name),
        scheduler_config=scheduler_config,
        model_path=path,
        family=family,
    )


def _load_part(cls, path: Path, part: str, name: str, **kwargs):
    """`cls.from_pretrained(path/part)` from local files; broken files become one line."""
    try:
        with no_progress_bars():
            return cls.from_pretrained(path, subfolder=part, local_files_only=True, **kwargs)
    except (OSError, ValueError) as err:
        raise ModelReferenceError(
            f"MODEL_NAME {name!r}: {part}/ could not be loaded ({_first_line(err)}); {FIX}"
        ) from err


@contextmanager
def no_progress_bars():
    """Silence transformers' and diffusers' load/save progress bars ("Loading weights",
    "Writing model shards") for the block: stderr is kept for what the user must read."""
    libraries = [lib for lib in (hf_logging, diffusers_logging) if lib.is_progress_bar_enabled()]
    for lib in libraries:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib in libraries:
            lib.enable_progress_bar()


def _first_line(err: Exception) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def fingerprint(module: torch.nn.Module) -> str:
    """Hex digest of a module's class, config and weights (names, shapes, dtypes, bytes).

    A cache key: equal only for identical encoders, whatever folder they came from. Tensors
    are hashed with blake2b in their own dtype on a thread pool (hashlib releases the GIL),
    about 1 GB/s per core: ~2-4 s for SDXL's VAE plus both text encoders in float32.
    """
    state = module.state_dict()
    names = sorted(state)
    with ThreadPoolExecutor() as pool:
        digests = list(pool.map(lambda n: _tensor_digest(state[n]), names))
    total = hashlib.blake2b(digest_size=16)
    total.update(type(module).__name__.encode())
    total.update(json.dumps(_config_of(module), sort_keys=True, default=str).encode())
    for name, digest in zip(names, digests, strict=True):
        total.update(name.encode() + b"\0" + digest)
    return total.hexdigest()


def _tensor_digest(tensor: torch.Tensor) -> bytes:
    """blake2b of a tensor's dtype, shape and raw bytes."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    h = hashlib.blake2b(f"{flat.dtype}{tuple(tensor.shape)}".encode(), digest_size=16)
    h.update(flat.view(torch.uint8).numpy().data if flat.numel() else b"")
    return h.digest()


def _config_of(module: torch.nn.Module) -> dict:
    """The module's model config without bookkeeping keys (paths, versions, dtype)."""
    config = getattr(module, "config", None)
    if config is None:
        return {}
    items = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    skip = {"transformers_version", "dtype", "torch_dtype", "architectures"}
    return {k: v for k, v in items.items() if not k.startswith("_") and k not in skip}
