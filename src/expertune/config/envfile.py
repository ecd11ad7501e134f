"""config.env -> Settings, parsed with python-dotenv, never with a shell.

Bash-like on purpose: ``export``, quotes and comments work; ``${VAR}``, ``${VAR:-default}``
and ``$VAR`` expand against values set *earlier in the same file* (never os.environ), and
not inside single quotes; the last assignment of a name wins. So the seed's
``TRAINER_EXTRA_ARGS="${TRAINER_EXTRA_ARGS} ..."`` keeps the flags of both lines.
Names referenced by another line (``BASE_DIR``) are helper variables, not settings.
"""

from __future__ import annotations

import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from dotenv.parser import parse_stream
from dotenv.variables import Variable, parse_variables

from expertune.config.argv import read_argv
from expertune.config.names import (
    ENV_TO_FLAG,
    ENV_TO_SIMPLETUNER,
    EXTRA_ARGS_ENV,
    KeyCheck,
    env_flag,
)
from expertune.config.setting import Setting, Settings
from expertune.config.text import read_config_text
from expertune.errors import ConfigError

_UNBRACED = re.compile(r"(?<!\\)\$([A-Za-z_][A-Za-z0-9_]*)")
_REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(:?)\?([^}]*)\}")
_SINGLE_QUOTED = re.compile(r"\s*(?:export\s+)?(?:'[^']+'|[^=#\s]+)[^\S\r\n]*=[^\S\r\n]*'")


@dataclass(frozen=True)
class Assignment:
    """One ``KEY=value`` line as dotenv read it (value not yet expanded)."""

    key: str
    value: str
    line: int
    text: str  # the line as written, for quoting rules and finding flags


def read_env_file(path: Path) -> Settings:
    """Settings from a config.env; TRAINER_EXTRA_ARGS flags override named settings."""
    values: dict[str, str] = {}
    lines: dict[str, int] = {}
    referenced: set[str] = set()
    extra_chain: list[Assignment] = []  # the TRAINER_EXTRA_ARGS lines that built its value
    for a in assignments(path):
        names, values[a.key] = expand(path, a, values)
        referenced |= names
        lines[a.key] = a.line
        if a.key == EXTRA_ARGS_ENV:
            extra_chain = [*extra_chain, a] if EXTRA_ARGS_ENV in names else [a]
    settings: Settings = {}
    check = KeyCheck(str(path))
    for key, value in values.items():
        named = key in ENV_TO_FLAG or key in ENV_TO_SIMPLETUNER
        if key == EXTRA_ARGS_ENV or (not named and key in referenced):
            continue
        where = f"{path}:{lines[key]}"
        flag = env_flag(check, key, value, where)
        if flag is not None:
            settings[flag] = Setting(value, key, where)
    check.finish()  # every refused name of the file in one ConfigError
    settings.update(extra_args(path, values.get(EXTRA_ARGS_ENV, ""), extra_chain))
    return settings


def assignments(path: Path) -> list[Assignment]:
    """The file's ``KEY=value`` lines; a line dotenv cannot parse is a ConfigError."""
    text = read_config_text(path)
    found = []
    for binding in parse_stream(io.StringIO(text)):
        raw = binding.original.string
        leading = raw[: len(raw) - len(raw.lstrip())]
        line = binding.original.line + leading.count("\n")
        if binding.error:
            snippet = raw.strip().splitlines()[0][:60] if raw.strip() else raw
            raise ConfigError(
                f"{path}:{line}: cannot parse {snippet!r}; "
                'lines look like KEY=value or export KEY="value"'
            )
        if binding.key is None or binding.value is None:  # comment, blank, bare `export KEY`
            continue
        if "\n" in binding.value or "\r" in binding.value:
            raise ConfigError(
                f"{binding.key} at {path}:{line}: the value runs over several lines; "
                "is a closing quote missing?"
            )
        found.append(Assignment(binding.key, binding.value, line, raw))
    return found


def expand(path: Path, a: Assignment, earlier: dict[str, str]) -> tuple[set[str], str]:
    """The names ``a`` references and its value with them expanded from ``earlier``."""
    if _SINGLE_QUOTED.match(a.text):
        return set(), a.value
    value, required = _required(path, a, earlier)
    atoms = list(parse_variables(_UNBRACED.sub(r"${\1}", value)))
    names = set()
    for atom in atoms:
        if not isinstance(atom, Variable):
            continue
        names.add(atom.name)
        if atom.name not in earlier and atom.default is None:
            raise ConfigError(
                f"{a.key} at {path}:{a.line} uses ${{{atom.name}}}, which is not set earlier "
                "in this file; expertune reads no environment variables, so set it above or "
                "write the value out"
            )
    return names | required, "".join(atom.resolve(earlier) for atom in atoms)


def _required(path: Path, a: Assignment, earlier: dict[str, str]) -> tuple[str, set[str]]:
    """The value with ``${VAR:?message}`` / ``${VAR?message}`` replaced by VAR's value; an
    unset VAR (or empty, for ``:?``) is a ConfigError carrying the message, as in bash."""
    names: set[str] = set()

    def one(match: re.Match) -> str:
        name, colon, message = match.group(1), match.group(2), match.group(3)
        names.add(name)
        value = earlier.get(name)
        if value is None or (colon and not value):
            said = message.strip() or f"{name} must be set"
            raise ConfigError(
                f"{a.key} at {path}:{a.line}: ${{{name}{colon}?...}}: {said} ({name} is not "
                f"set{'' if value is None else ' to a value'} earlier in this file; "
                "expertune reads no environment variables)"
            )
        return value

    return _REQUIRED.sub(one, a.value), names


def extra_args(path: Path, value: str, chain: list[Assignment]) -> Settings:
    """TRAINER_EXTRA_ARGS split with shlex into flags, each pointing at its own line."""
    if not value.strip():
        return {}
    try:
        tokens = shlex.split(value)
    except ValueError as err:
        raise ConfigError(
            f"{EXTRA_ARGS_ENV} at {path}:{chain[-1].line}: {err}; check its quotes"
        ) from None

    def where(token: str) -> str:
        written = re.compile(rf"(?<![\w-]){re.escape(token.partition('=')[0])}(?![\w-])")
        line = next((a.line for a in chain if written.search(a.text)), chain[-1].line)
        return f"{EXTRA_ARGS_ENV} at {path}:{line}"

    return read_argv(tokens, where)
