"""What a job's data preparation left out or changed, said once.

Everything skipped (with its reason), captions that fell back to the file name, images
held out because an eval dataset has them, images smaller than their bucket: one
summary line at the end of the scan, and the full list in run_summary.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SHOWN = 3  # skipped files named in the summary line; run_summary.json has them all


@dataclass
class DataReport:
    """What the scan left out or changed, for the one summary line and run_summary.json."""

    skipped: list[tuple[Path, str]] = field(default_factory=list)  # (file, reason)
    caption_fallbacks: list[Path] = field(default_factory=list)  # textfile without .txt
    upscaled: int = 0  # images smaller than their bucket
    held_out: int = 0  # training images also in an eval dataset
    long_captions: list[tuple[Path, int, int]] = field(
        default_factory=list
    )  # (image, tokens, kept)
    small_groups: list[tuple[str, tuple[int, int], int, int]] = field(default_factory=list)
    # (dataset, bucket (h, w), samples per epoch, global batch): batches repeat samples

    def add_failures(self, failed: list[tuple[Path, str]]) -> None:
        """Images that failed to decode: skipped, and no longer caption fallbacks."""
        self.skipped.extend(failed)
        gone = {path for path, _ in failed}
        self.caption_fallbacks = [p for p in self.caption_fallbacks if p not in gone]

    def summary(self) -> str | None:
        """One line naming what was left out and changed, or None when nothing was."""
        parts = []
        if self.skipped:
            shown = "; ".join(why for _, why in self.skipped[:SHOWN])
            more = f"; and {len(self.skipped) - SHOWN} more" if len(self.skipped) > SHOWN else ""
            parts.append(f"skipped {count(self.skipped, 'unusable file')}: {shown}{more}")
        if self.caption_fallbacks:
            first = self.caption_fallbacks[0]
            n = count(self.caption_fallbacks, "image")
            verb = "uses its" if len(self.caption_fallbacks) == 1 else "use their"
            parts.append(f"{n} without a caption file {verb} file name (e.g. {first})")
        if self.held_out:
            parts.append(
                f"{count(self.held_out, 'training image')} also in an eval dataset held out"
            )
        if self.upscaled:
            n = count(self.upscaled, "image")
            parts.append(f"{n} smaller than the bucket upscaled (minimum_image_size skips them)")
        if self.long_captions:
            path, tokens, kept = self.long_captions[0]
            n = count(self.long_captions, "caption")
            parts.append(
                f"{n} longer than the text encoder's {kept} tokens cut to {kept} (e.g. {path}: "
                f"{tokens} tokens, {tokens - kept} cut)"
            )
        if self.small_groups:
            dataset, (h, w), n, batch = self.small_groups[0]
            more = (
                f" (and {len(self.small_groups) - 1} more buckets)"
                if len(self.small_groups) > 1
                else ""
            )
            parts.append(
                f"dataset {dataset!r} bucket {w}x{h} has {count(n, 'sample')} per epoch for a "
                f"batch of {batch}: each batch repeats them ({batch} copies of {n}){more}"
            )
        return f"data: {'; '.join(parts)}" if parts else None


def count(things: int | Sequence, noun: str) -> str:
    n = things if isinstance(things, int) else len(things)
    return f"{n} {noun}{'' if n == 1 else 's'}"
