"""Find a model (local folder, Hugging Face hub name or the reserved `expertune/tiny-sdxl`)
and load its parts, safetensors only.

Every failure a user can fix is a one-line ModelReferenceError naming MODEL_NAME's value:
a missing path, a folder that is not a diffusers model, another family, a single-file
checkpoint, pickle-only weights, or a hub name that cannot be reached. Offline, a hub
name fails in well under a second instead of waiting for the hub client's retries.

Pickle weights (.bin, .ckpt, .pt) can run code when unpickled, so they are refused unless
the caller trusts them (`--allow_pickle_weights`); even then every torch.load inside the
load is forced to `weights_only=True` (torch's own switch), whatever the library passes.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from huggingface_hub import constants, get_session, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from expertune.errors import ModelReferenceError
from expertune.io import no_progress_bars
from expertune.models.embedded import (
    RESERVED_NAMES,
    SHAPES_MODEL_NAME,
    embedded_model_folder,
    near_reserved_name,
    nearest_reserved_name,
)
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
    allow_pickle: bool = False,
    model_cache_dir: str | Path | None = None,
) -> Path:
    """The local diffusers folder for `name`: a folder, a hub id (local cache first), or
    a reserved name `expertune/tiny-sdxl[-shapes]` (models/embedded.py).

    `offline=None` follows huggingface_hub (HF_HUB_OFFLINE). Online, one short probe of
    the hub decides before any download starts, so an unreachable hub fails fast.
    `cache_dir` is the Hugging Face cache; `model_cache_dir` is where the embedded tiny
    model is built once (default ~/.cache/expertune).
    """
    if name in RESERVED_NAMES:
        return embedded_model_folder(name, model_cache_dir)
    path = Path(name).expanduser()
    if path.exists():
        return _check_local(path, name)
    if near_reserved_name(name):
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} is not a model expertune knows (no such folder); did you "
            f"mean {nearest_reserved_name(name)!r}, "
            + (
                "the pretrained embedded tiny SDXL?"
                if nearest_reserved_name(name) == SHAPES_MODEL_NAME
                else "the embedded tiny SDXL model?"
            )
        )
    if name.lower().endswith(CHECKPOINT_SUFFIXES) or not is_hub_id(name):
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} does not exist (no such file or folder); {FIX}, "
            "or to a Hugging Face model id like 'stabilityai/stable-diffusion-xl-base-1.0'"
        )
    return _from_hub(
        name,
        offline=offline,
        cache_dir=cache_dir,
        probe_timeout=probe_timeout,
        allow_pickle=allow_pickle,
    )


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
    name: str,
    *,
    offline: bool | None,
    cache_dir: str | Path | None,
    probe_timeout: float,
    allow_pickle: bool = False,
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
        snapshot = snapshot_download(
            name, cache_dir=cache_dir, allow_patterns=_hub_files(name, allow_pickle)
        )
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


def _hub_files(name: str, allow_pickle: bool = False) -> list[str]:
    """The files of hub repo `name` that a safetensors diffusers load needs."""
    from huggingface_hub import HfApi

    return select_hub_files(HfApi().list_repo_files(name), allow_pickle)


def select_hub_files(files: list[str], allow_pickle: bool = False) -> list[str]:
    """Configs, tokenizers and safetensors weights, without pickles or single-file checkpoints.

    A folder's variant weights (`*.fp16.safetensors`) are skipped when plain ones exist;
    with `allow_pickle`, pickle weights are fetched for folders that have no safetensors.
    """
    plain = {f.rpartition("/")[0] for f in files if _is_plain_safetensors(f)}
    safe = {f.rpartition("/")[0] for f in files if f.endswith(".safetensors")}
    pickles_for = set() if not allow_pickle else {f.rpartition("/")[0] for f in files} - safe
    return [f for f in files if _wanted(f, plain, pickles_for)]


def _wanted(file: str, folders_with_plain_weights: set[str], pickles_for: set[str]) -> bool:
    folder, _, base = file.rpartition("/")
    if not folder:  # top level: single-file checkpoints, README, images
        return base == "model_index.json"
    if base.endswith(PICKLE_SUFFIXES):
        return folder in pickles_for
    if base.endswith(OTHER_FORMATS):
        return False
    variant = base.endswith(".safetensors") and not _is_plain_safetensors(file)
    return not (variant and folder in folders_with_plain_weights)


def _is_plain_safetensors(filename: str) -> bool:
    """`model.safetensors` or a shard of it; False for variants like `model.fp16.safetensors`."""
    base = filename.rpartition("/")[2]
    return base.endswith(".safetensors") and base.count(".") == 1


def weights_variant(folder: Path, name: str, allow_pickle: bool = False) -> str | None:
    """The diffusers `variant` to load from `folder` (None for plain safetensors or pickles).

    Refuses, in one line, folders with only pickle weights (they could run code on load)
    unless `allow_pickle`: the user's explicit trust flag.
    """
    if not folder.is_dir():
        raise ModelReferenceError(f"MODEL_NAME {name!r} has no {folder.name}/ folder; {FIX}")
    safetensors = sorted(p.name for p in folder.glob("*.safetensors"))
    if any(_is_plain_safetensors(f) for f in safetensors):
        return None
    if safetensors:  # e.g. diffusion_pytorch_model.fp16.safetensors
        return safetensors[0].split(".")[1].split("-")[0]
    if pickle_only(folder):
        if allow_pickle:
            return None
        raise ModelReferenceError(
            f"MODEL_NAME {name!r}: {folder.name}/ holds only pickle weights (.bin/.ckpt), which "
            "expertune refuses to load because unpickling can run code; convert them to "
            "safetensors (load and save_pretrained(..., safe_serialization=True)), or pass "
            "--allow_pickle_weights if you trust the file"
        )
    raise ModelReferenceError(f"MODEL_NAME {name!r}: {folder.name}/ holds no weights; {FIX}")


def pickle_only(folder: Path) -> bool:
    """Whether `folder` holds pickle weights and no safetensors."""
    files = list(folder.iterdir()) if folder.is_dir() else []
    has_safetensors = any(p.suffix == ".safetensors" for p in files)
    return not has_safetensors and any(p.suffix in PICKLE_SUFFIXES for p in files)


@contextmanager
def weights_only_loads():
    """Every torch.load in the block reads tensors and plain containers only, never code.

    torch's TORCH_FORCE_WEIGHTS_ONLY_LOAD switch overrides what any caller (diffusers,
    transformers) passes; the opposite switch is lifted for the block.
    """
    names = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {key: os.environ.pop(key, None) for key in names}
    os.environ[names[0]] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


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
    allow_pickle: bool = False,
    model_cache_dir: str | Path | None = None,
) -> Components:
    """Load the parts of `family` from `name` (see resolve_model_path), safetensors only
    unless `allow_pickle` (then pickles are read with weights_only=True)."""
    fam = get_family(family)
    path = resolve_model_path(
        name,
        offline=offline,
        cache_dir=cache_dir,
        allow_pickle=allow_pickle,
        model_cache_dir=model_cache_dir,
    )
    found = detect_family(read_model_index(path), where=f"MODEL_NAME {name!r} (model_index.json)")
    if found != family:
        raise ModelReferenceError(
            f"MODEL_NAME {name!r} is a model of family {found!r}, but family {family!r} is "
            "expected here; point MODEL_NAME at a model of that family"
        )
    has = set(fam.components)
    variants = {
        part: weights_variant(path / part, name, allow_pickle) for part in fam.weight_folders
    }
    scheduler_config = read_scheduler_config(path, name)

    def weights(cls, part: str, **dtype_arg):
        if part not in has:
            return None
        return _load_weights(cls, path, part, name, variants[part], **dtype_arg)

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


def load_unet(
    path: Path, name: str, allow_pickle: bool = False, dtype: torch.dtype = torch.float32
):
    """The UNet alone from a resolved model folder (`Components.model_path`), loaded the
    way load_components loads it: a second, untouched copy of the base."""
    variant = weights_variant(path / "unet", name, allow_pickle)
    return _load_weights(UNet2DConditionModel, path, "unet", name, variant, torch_dtype=dtype)


def _load_weights(cls, path: Path, part: str, name: str, variant: str | None, **dtype_arg):
    """A weighted part: safetensors (in `variant`), or a pickle read with weights_only."""
    if pickle_only(path / part):
        with weights_only_loads():
            return _load_part(cls, path, part, name, use_safetensors=False, **dtype_arg)
    kwargs = {"use_safetensors": True, "variant": variant, **dtype_arg}
    return _load_part(cls, path, part, name, **kwargs)


def _load_part(cls, path: Path, part: str, name: str, **kwargs):
    """`cls.from_pretrained(path/part)` from local files; broken files become one line."""
    try:
        with no_progress_bars():
            return cls.from_pretrained(path, subfolder=part, local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as err:
        if _refused_pickle(err):
            raise ModelReferenceError(
                f"MODEL_NAME {name!r}: {part}/ could not be loaded: its pickle holds more than "
                "tensors, so torch.load(weights_only=True) refused it (it could run code); "
                "use a safetensors copy from a source you trust"
            ) from err
        raise ModelReferenceError(
            f"MODEL_NAME {name!r}: {part}/ could not be loaded ({_first_line(err)}); {FIX}"
        ) from err


def _refused_pickle(err: BaseException | None) -> bool:
    """Whether a weights_only unpickling refusal is behind `err` (libraries re-wrap it)."""
    while err is not None:
        if isinstance(err, pickle.UnpicklingError):
            return True
        err = err.__cause__ or err.__context__
    return False


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
