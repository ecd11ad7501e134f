"""Config sources -> a flat dict of flag name -> Setting (raw value + where it came from).

Sources: config.env (envfile.py), SimpleTuner-style .json and .toml (here), and
command-line flags (argv.py). Values stay raw (strings from env files and argv, typed
from JSON/TOML); the schema converts and validates them, and errors quote the key as the
user wrote it. Precedence, lowest first: the file, then the command line.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path

from expertune.config.argv import read_argv
from expertune.config.envfile import read_env_file
from expertune.config.names import KeyCheck
from expertune.config.setting import Setting, Settings
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
    """A JSON object of SimpleTuner flags, keys with or without leading ``--``."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
    return read_mapping(data, str(path))


def read_toml(path: Path) -> Settings:
    """A TOML file of top-level SimpleTuner flags, keys with or without leading ``--``."""
    try:
        data = tomllib.loads(read_text(path))
    except tomllib.TOMLDecodeError as err:
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
    """The file's text, or a ConfigError when it is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text ({err.reason})") from None
