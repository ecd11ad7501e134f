"""Latents to pictures and pictures to panels: decode, side by side, grids, PSNR."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw


def decode(vae, latents: torch.Tensor) -> list[Image.Image]:
    """Scaled latents (as cached and as the UNet sees them) -> RGB images."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    z = latents.to(vae.device, vae.dtype) / vae.config.scaling_factor + shift
    with torch.no_grad():
        pixels = vae.decode(z).sample
    return [to_image(p) for p in pixels]


def to_image(pixels: torch.Tensor) -> Image.Image:
    """(3, H, W) pixels in [-1, 1] -> an RGB image."""
    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).cpu().numpy())


def to_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image -> (3, H, W) uint8 tensor (TensorBoard and CLIP score take these)."""
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


def psnr(reference: Image.Image, image: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB over 8-bit RGB (torchmetrics, data range 1)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    ref, img = (to_tensor(i).float() / 255 for i in (reference, image))
    return float(peak_signal_noise_ratio(img, ref, data_range=1.0))


def side_by_side(images: Sequence[Image.Image], labels: Sequence[str], gap: int = 2) -> Image.Image:
    """Images in one row with a label strip above each (original | noised | refined)."""
    strip = 12
    width = sum(i.width for i in images) + gap * (len(images) - 1)
    height = max(i.height for i in images) + strip
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    x = 0
    for image, label in zip(images, labels, strict=True):
        canvas.paste(image.convert("RGB"), (x, strip))
        draw.text((x + 2, 0), label, fill="black")
        x += image.width + gap
    return canvas


def grid(rows: Sequence[Sequence[Image.Image]], gap: int = 2) -> Image.Image:
    """Rows of images on one white canvas, each row left-aligned."""
    width = max(sum(i.width for i in row) + gap * (len(row) - 1) for row in rows)
    heights = [max(i.height for i in row) for row in rows]
    canvas = Image.new("RGB", (width, sum(heights) + gap * (len(rows) - 1)), "white")
    y = 0
    for row, height in zip(rows, heights, strict=True):
        x = 0
        for image in row:
            canvas.paste(image.convert("RGB"), (x, y))
            x += image.width + gap
        y += height + gap
    return canvas
