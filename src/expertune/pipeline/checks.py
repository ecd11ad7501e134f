"""`expertune generate` inputs checked before any model loads: each mistake is one line."""

from __future__ import annotations

from pathlib import Path

from expertune.errors import ConfigError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def check_request(
    *,
    steps: int,
    height: int | None,
    width: int | None,
    base_model_power: float | None,
    guidance: dict[str, float | None],  # flag -> value (scales and rescales)
    out: str | Path,
) -> None:
    """Raise a ConfigError naming the flag for the first value that cannot be right."""
    if steps < 1:
        raise ConfigError(f"--steps {steps}: needs at least 1 denoising step, e.g. --steps 40")
    for flag, value in (("--height", height), ("--width", width)):
        if value is not None and (value < 8 or value % 8):
            raise ConfigError(
                f"{flag} {value}: SDXL's VAE needs a multiple of 8 pixels, e.g. "
                f"{flag} {max(8, round(value / 8) * 8)}"
            )
    if base_model_power is not None and not 0 < base_model_power < 1:
        raise ConfigError(
            f"--base-model-power {base_model_power} must lie strictly between 0 and 1 "
            "(the fraction of the steps the base runs, e.g. 0.65)"
        )
    for flag, value in guidance.items():
        if value is None:
            continue
        if "rescale" in flag and not 0 <= value <= 1:
            raise ConfigError(f"{flag} {value} must lie in [0, 1] (0.7 for zero-SNR models)")
        if "rescale" not in flag and value < 0:
            raise ConfigError(f"{flag} {value} must be 0 or more (e.g. 7.5; 1 = no guidance)")
    check_out(Path(out))


def check_out(out: Path) -> None:
    """The image path has a known image extension and can be created (no file in the way)."""
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise ConfigError(
            f"--out {out}: unknown image extension {out.suffix or '(none)'!r}; use one of "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give an image file name like {out}/out.png")
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"--out {out} cannot be created: {blocker} is a file; pick another path")
