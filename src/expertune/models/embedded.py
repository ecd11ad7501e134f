"""The reserved MODEL_NAMEs: the embedded tiny SDXLs, built on first use.

`expertune/tiny-sdxl` has random weights (fast tests) and is built on first use, as
below. `expertune/tiny-sdxl-shapes` is pretrained on the procedural shape domain
(`app/shapes_parent.py`: a parent that draws what its prompt says, for the demo, the reports
and the split-vs-single study); its build takes 15-30 minutes on 2 cores, so it ships
with the package, built by `python -m expertune.app.shapes_parent`, and is used in place
(read only).

MODEL_NAME may be a hub name, a local diffusers folder or this name (issue 2), so a config
can try the whole workflow without any download. The tiny model (`models/tiny.py`,
seed 0) is built once into `<cache_dir>/tiny-sdxl-<version>-<build>` (cache_dir defaults
to ~/.cache/expertune) and every later job reuses it. It is built in a temporary folder
beside the final one and renamed into place while holding a file lock, so two jobs that
start together build it once, and no job ever sees a half-written folder (a killed build
leaves only a hidden temporary folder that the next build ignores).

`<build>` is a digest of the builder's source and of the library versions that decide its
weights: a changed builder gets a fresh folder instead of silently reusing a stale one.
"""

from __future__ import annotations

import difflib
import hashlib
import shutil
import tempfile
from pathlib import Path

from expertune import __version__
from expertune.errors import ModelReferenceError

TINY_MODEL_NAME = "expertune/tiny-sdxl"
SHAPES_MODEL_NAME = "expertune/tiny-sdxl-shapes"
RESERVED_NAMES = (TINY_MODEL_NAME, SHAPES_MODEL_NAME)
TINY_SEED = 0
_COMPLETE = "expertune_tiny.json"  # the builder writes it last


def default_cache_dir() -> Path:
    """Where expertune keeps what it builds for itself: ~/.cache/expertune."""
    return Path.home() / ".cache" / "expertune"


def build_tag() -> str:
    """12 hex digits naming one build of the tiny model: builder source + library versions."""
    import diffusers
    import torch
    import transformers

    from expertune.models import tiny, tokenizer

    digest = hashlib.sha256()
    for module in (tiny, tokenizer):
        digest.update(Path(module.__file__).read_bytes())
    for library in (torch, diffusers, transformers):
        digest.update(f"{library.__name__}=={library.__version__}".encode())
    digest.update(f"seed={TINY_SEED}".encode())
    return digest.hexdigest()[:12]


def tiny_model_folder(cache_dir: str | Path | None = None) -> Path:
    """The folder of the built random tiny model under `cache_dir`, building it if needed."""
    return embedded_model_folder(TINY_MODEL_NAME, cache_dir)


SHAPES_FOLDER = Path(__file__).parent / "assets" / "tiny-sdxl-shapes"


def shapes_model_folder() -> Path:
    """The folder of the pretrained shapes parent shipped with the package."""
    if not (SHAPES_FOLDER / _COMPLETE).is_file():
        raise ModelReferenceError(
            f"MODEL_NAME {SHAPES_MODEL_NAME!r}: {SHAPES_FOLDER} is missing from this install; "
            f"rebuild it with `python -m expertune.app.shapes_parent {SHAPES_FOLDER}`"
        )
    return SHAPES_FOLDER


def embedded_model_folder(name: str, cache_dir: str | Path | None = None) -> Path:
    """The folder of reserved model `name`; the random one is built under `cache_dir`."""
    if name == SHAPES_MODEL_NAME:
        return shapes_model_folder()
    return _built_folder(cache_dir)


def _built_folder(cache_dir: str | Path | None) -> Path:
    """The random tiny model under `cache_dir` (default ~/.cache/expertune), built once."""
    name = TINY_MODEL_NAME
    root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    final = root / f"tiny-sdxl-{__version__}-{build_tag()}"
    if (final / _COMPLETE).is_file():
        return final
    from filelock import FileLock

    try:
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(root / f".{final.name}.lock"):
            if not (final / _COMPLETE).is_file():
                _build_into(final)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ModelReferenceError(
            f"MODEL_NAME {name!r}: the embedded tiny model could not be built "
            f"in {root} ({reason}); make that folder writable or free some space"
        ) from err
    return final


def _build_into(final: Path) -> None:
    """Build in a temporary sibling folder, then rename it to `final` (atomic on one disk)."""
    from expertune.models import tiny

    temp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        tiny.build_tiny_sdxl(temp, seed=TINY_SEED)
        temp.chmod(0o755)  # mkdtemp makes it 0700: every user of the cache reads the model
        if final.exists():  # left by hand without its completion marker
            shutil.rmtree(final)
        temp.rename(final)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def near_reserved_name(name: str) -> bool:
    """Whether `name` looks like a mistyped reserved name (and is none of them).

    Anything under the `expertune/` owner counts, and names a character or two away
    (`expertune/tiny-sdx`, `expertun/tiny-sdxl`, `Expertune/Tiny-SDXL`).
    """
    if name in RESERVED_NAMES:
        return False
    folded = name.strip().lower()
    if folded.split("/")[0] == "expertune":
        return True
    return any(difflib.SequenceMatcher(None, folded, n).ratio() >= 0.85 for n in RESERVED_NAMES)


def nearest_reserved_name(name: str) -> str:
    """The reserved name `name` most probably meant."""
    folded = name.strip().lower()
    return max(RESERVED_NAMES, key=lambda n: difflib.SequenceMatcher(None, folded, n).ratio())
