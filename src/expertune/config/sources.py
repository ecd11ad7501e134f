"""Config sources -> a flat dict of flag name -> Setting (raw value + where it came from).

Sources: config.env (envfile.py), SimpleTuner-style .json and .toml (here), and
command-line flags (argv.py). Values stay raw (strings from env files and argv, typed
from JSON/TOML); the schema converts and validates them, and errors quote the key as the
user wrote it. Precedence, lowest first: the file, then the command line.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

from expertune.config.argv import read_argv
from expertune.config.envfile import read_env_file
from expertune.config.names import KeyCheck
from expertune.config.setting import Setting, Settings
from expertune.config.text import read_config_text
from expertune.errors import ConfigError

__all__ = ["Setting", "Settings", "read_argv", "read_env_file", "read_file", "read_mapping"]


def read_file(path: str | Path) -> Settings:
    """Read a config file by its extension: .env (or a file named .env), .json, .toml."""
    path = Path(path)
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {path} {what}")
    if path.suffix == ".env" or path.name == ".env":
        return read_env_file(path)
    if path.suffix == ".json":
        return read_json(path)
    if path.suffix == ".toml":
        return read_toml(path)
    raise ConfigError(
        f"config file {path} has an unknown extension {path.suffix or '(none)'!r}; "
        "use config.env, .json or .toml"
    )


def read_json(path: Path) -> Settings:
    """A JSON object of SimpleTuner flags, keys with or without leading ``--``.

    A key written twice is refused (json keeps the last silently), naming both lines.
    """
    text = read_text(path)
    try:
        data = json.loads(text, object_pairs_hook=_no_repeats(path, text))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
    return read_mapping(data, str(path))


def _no_repeats(path: Path, text: str):
    """An object_pairs_hook that raises ConfigError on a repeated key."""

    def hook(pairs: list[tuple[str, object]]) -> dict:
        seen: dict[str, object] = {}
        for key, value in pairs:
            if key in seen:
                lines = _key_lines(text, key)
                at = " and ".join(str(n) for n in lines[:2]) if len(lines) > 1 else "?"
                raise ConfigError(
                    f"{path}: key {key!r} is set twice (lines {at}); keep one of them"
                )
            seen[key] = value
        return seen

    return hook


def _repeated_toml_key(text: str, message: str) -> tuple[str, list[int]] | None:
    """(key, [first line, repeated line]) when tomllib refused a key written twice."""
    found = re.search(r"Cannot overwrite a value \(at line (\d+)", message)
    if not found:
        return None
    lines = text.splitlines()
    at = int(found.group(1))
    written = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", lines[at - 1]) if at <= len(lines) else None
    if not written:
        return None
    key = written.group(1)
    same = re.compile(rf"\s*{re.escape(key)}\s*=")
    first = next((n for n, line in enumerate(lines[: at - 1], 1) if same.match(line)), None)
    return (key, [first, at]) if first else None


def _key_lines(text: str, key: str) -> list[int]:
    """Line numbers where `"key":` is written (best effort, for the message)."""
    written = re.compile(rf'"{re.escape(key)}"\s*:')
    return [n for n, line in enumerate(text.splitlines(), 1) if written.search(line)]


def read_toml(path: Path) -> Settings:
    """A TOML file of top-level SimpleTuner flags, keys with or without leading ``--``."""
    text = read_text(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        repeated = _repeated_toml_key(text, str(err))
        if repeated:
            key, lines = repeated
            raise ConfigError(
                f"{path}: key {key!r} is set twice (lines {lines[0]} and {lines[1]}); keep "
                "one of them"
            ) from None
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return read_mapping(data, str(path))


def read_mapping(data: object, where: str) -> Settings:
    """Flags from an already-parsed mapping (the body of a JSON or TOML file)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f'{where} must hold one object of flags, like {{"learning_rate": 1e-6}}')
    settings: Settings = {}
    check = KeyCheck(where)
    for key, value in data.items():
        if isinstance(value, Mapping | list):
            raise ConfigError(
                f"{key} in {where} must be a single value, not a table or list; "
                "write every flag at the top level"
            )
        flag = check.flag(str(key), value)
        if flag is not None:
            settings[flag] = Setting(value, str(key), where)
    check.finish()  # every refused key of the file in one ConfigError
    return settings


def read_text(path: Path) -> str:
    """The file's text (a byte-order mark dropped), or a ConfigError naming the line."""
    return read_config_text(path)
