"""Setting: one value the user set, with the key as written and where it was written."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    """A raw value plus its origin, so errors can quote the user's own words."""

    value: object  # str from .env and argv; str/int/float/bool/None from JSON and TOML
    written: str  # LEARNING_RATE, --learning_rate, learning_rate ...
    where: str  # config/config.env:9, TRAINER_EXTRA_ARGS at config/config.env:27, command line

    def describe(self) -> str:
        return f"{self.written} ({self.where})"


Settings = dict[str, Setting]  # flag (field) name -> Setting
