"""A config file's text: UTF-8, a byte-order mark accepted, an error naming the line."""

from __future__ import annotations

from pathlib import Path

from expertune.errors import ConfigError


def read_config_text(path: Path) -> str:
    """The file's text (a UTF-8 byte-order mark is dropped, as editors on Windows add one),
    or a ConfigError naming the line when it is not UTF-8."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"config file {path}:{line} is not UTF-8 text ({err.reason} at byte {err.start}); "
            "save the file as UTF-8"
        ) from None
