"""ControlNet conditioning images: SimpleTuner's `conditioning_data` pairing.

An image dataset names a `dataset_type: "conditioning"` dataset in `conditioning_data`;
each of its training images is paired with the conditioning image of the same file name
(the same path relative to the dataset folder, else the same name). The conditioning
image is resized to its training image's size, then cropped by the training image's own
crop plan, so both show the same part of the scene; its pixels are kept in [0, 1]
(diffusers' ControlNet convention) and cached in the training image's latent entry.

`check_pairs` finds a missing pair by file names alone (no file is opened), for the
preflight; `conditioning_samples` scans the conditioning folder when planning.
"""

from __future__ import annotations

from pathlib import Path

import torch

from expertune.data.captions import CaptionRule
from expertune.data.images import CropPlan, load_image, render
from expertune.data.local_folder import Sample, file_digest, list_images, scan_folder
from expertune.errors import ConfigError, DataError

KEY = "conditioning_pixel_values"  # the batch key, as in SimpleTuner and diffusers' example


def _relative(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def find_pair(image: Path, root: Path, found: dict[str, Path]) -> Path | None:
    """The conditioning file of training `image` (under `root`) among `found` (relative
    path -> file): the same relative path, else the same file name."""
    rel = _relative(image, root)
    if rel in found:
        return found[rel]
    by_name = {Path(k).name: v for k, v in found.items()}
    return by_name.get(image.name)


def check_pairs(cfg, config) -> None:
    """--controlnet has a conditioning dataset, and every training image its pair.

    One ConfigError line naming the key or the file and the fix; reads folder listings only.
    """
    paired = [spec for spec in config.training if spec.conditioning_data]
    if getattr(cfg, "controlnet", False) and not paired:
        raise ConfigError(
            f"--controlnet=true needs conditioning images: in {config.source} give the image "
            'dataset "conditioning_data": "<id>" and add that dataset with '
            '"dataset_type": "conditioning" (images of the same file names)'
        )
    if paired and not getattr(cfg, "controlnet", False):
        raise ConfigError(
            f"dataset {paired[0].id!r} names conditioning_data, which only --controlnet=true "
            "trains on; set --controlnet=true or remove conditioning_data"
        )
    for spec in paired:
        cond = config.conditioning_of(spec)
        root, cond_root = Path(spec.instance_data_dir), Path(cond.instance_data_dir)
        if not cond_root.is_dir():
            raise ConfigError(
                f"conditioning dataset {cond.id!r}: folder {cond_root} does not exist; fix "
                f"instance_data_dir in {config.source}"
            )
        found = {_relative(p, cond_root): p for p in list_images(cond_root)}
        for image in list_images(root):
            if find_pair(image, root, found) is None:
                raise ConfigError(
                    f"training image {image} has no conditioning image in {cond_root} "
                    f"(dataset {cond.id!r}); add {cond_root / _relative(image, root)} or "
                    "remove the training image"
                )


def conditioning_samples(spec) -> tuple[Path, dict[str, Sample]]:
    """The conditioning dataset's folder and its samples by relative path (digest, size)."""
    scan = scan_folder(spec.instance_data_dir, CaptionRule("filename"))
    root = Path(spec.instance_data_dir)
    return root, {_relative(s.path, root): s for s in scan.samples}


def pair_of(sample: Sample, root: Path, cond_root: Path, found: dict[str, Sample]) -> Sample:
    """The conditioning sample of training `sample`; DataError naming the file if none."""
    paths = {k: v.path for k, v in found.items()}
    path = find_pair(sample.path, root, paths)
    if path is None:
        raise DataError(
            f"training image {sample.path} has no readable conditioning image in {cond_root}; "
            f"add {cond_root / _relative(sample.path, root)} or remove the training image"
        )
    return next(s for s in found.values() if s.path == path)


def render_conditioning(cond: Sample, plan: CropPlan) -> torch.Tensor:
    """(3, H, W) in [0, 1]: `cond` resized to its training image's size, cropped as `plan`."""
    try:
        data = Path(cond.path).read_bytes()
    except OSError as error:
        raise DataError(f"cannot read {cond.path}: {error.strerror}") from error
    if file_digest(data) != cond.digest:
        raise DataError(f"{cond.path} changed since the folder was scanned; run again")
    image = load_image(cond.path, data).convert("RGB")
    height, width = plan.original
    if (image.height, image.width) != (height, width):
        image = image.resize((width, height))
    return (render(image, plan) + 1.0) / 2.0
