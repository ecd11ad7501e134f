"""CLIP score [Hessel et al. 2021] of validation images against their prompts.

torchmetrics' `clip_score` does the maths: 100 * cosine similarity of CLIP image and
text embeddings, floored at 0, so scores are on a 0-100 scale (not 0-1; not 0-2.5).
The CLIP model comes from `--pretrained_evaluation_model_name_or_path`: a local folder
(a transformers CLIPModel + CLIPProcessor saved with save_pretrained), or a hub id read
from the local Hugging Face cache and downloaded only when the hub answers. The path is
resolved when training starts, so an unreachable model fails before any step, in one line.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

from expertune.errors import ModelReferenceError

FLAG = "--pretrained_evaluation_model_name_or_path"


def resolve_clip_model(name: str, offline: bool | None = None) -> Path:
    """The local folder of CLIP model `name` (a folder, or a hub id in the cache or online)."""
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelReferenceError(
                f"{FLAG} {name!r} is not a CLIP model folder (no config.json); save one with "
                "CLIPModel.save_pretrained and CLIPProcessor.save_pretrained"
            )
        return path
    from expertune.models.load import is_hub_id

    if not is_hub_id(name):
        raise ModelReferenceError(
            f"{FLAG} {name!r} does not exist; give a local CLIP folder or a hub id like "
            "openai/clip-vit-large-patch14-336"
        )
    return _from_hub(name, offline)


def _from_hub(name: str, offline: bool | None) -> Path:
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from expertune.models.load import hub_reachable

    try:
        return Path(snapshot_download(name, local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    offline = constants.HF_HUB_OFFLINE if offline is None else offline
    if offline or not hub_reachable():
        raise ModelReferenceError(
            f"{FLAG} {name!r} is not in the local Hugging Face cache and the hub cannot be "
            "reached; save the CLIP model to a folder on a connected machine and pass the folder"
        )
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(snapshot_download(name, allow_patterns=_wanted_files(name)))
    except (HfHubHTTPError, OSError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelReferenceError(f"{FLAG} {name!r} could not be downloaded ({first})") from err


def _wanted_files(name: str) -> list[str]:
    """Configs, tokenizer files and safetensors weights (pickled weights only if none)."""
    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(name)
    weights = "*.safetensors" if any(f.endswith(".safetensors") for f in files) else "*.bin"
    return ["*.json", "*.txt", weights]


class ClipScorer:
    """Loads the CLIP model on first use and scores (image, prompt) pairs one by one."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = Path(model_dir)
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            from transformers import CLIPModel, CLIPProcessor

            from expertune.io import no_progress_bars

            with no_progress_bars():
                model = CLIPModel.from_pretrained(self.model_dir, local_files_only=True).eval()
                processor = CLIPProcessor.from_pretrained(self.model_dir, local_files_only=True)
            self._loaded = (FeatureTensors(model), processor)
        return self._loaded

    def scores(self, images: Sequence, prompts: Sequence[str], device=None) -> list[float]:
        """One CLIP score (0-100) per RGB image and its prompt; CLIP runs on `device`."""
        from torchmetrics.functional.multimodal import clip_score

        from expertune.evaluate.images import to_tensor

        with torch.no_grad():
            return [
                float(clip_score(to_tensor(i).to(device), p, model_name_or_path=self._load))
                for i, p in zip(images, prompts, strict=True)
            ]


def _features(out):
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class FeatureTensors(torch.nn.Module):
    """A CLIPModel whose get_*_features return the projected embeddings as tensors.

    transformers 5 returns a model output (projection in `pooler_output`) where
    torchmetrics' clip_score expects a tensor, as transformers 4 returned.
    """

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, *args, **kwargs) -> torch.Tensor:
        return _features(self.model.get_image_features(*args, **kwargs))

    def get_text_features(self, *args, **kwargs) -> torch.Tensor:
        return _features(self.model.get_text_features(*args, **kwargs))


def summary(values: Sequence[float]) -> dict[str, float]:
    """min, mean, max and (population) std of some scores."""
    return {
        "min": min(values),
        "mean": statistics.fmean(values),
        "max": max(values),
        "std": statistics.pstdev(values),
        "count": len(values),
    }
