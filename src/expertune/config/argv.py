"""Command-line style flags -> Settings (used for argv and for TRAINER_EXTRA_ARGS)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from expertune.config.names import BOOL_FLAGS, KeyCheck
from expertune.config.setting import Setting, Settings
from expertune.errors import ConfigError

BOOL_WORDS = frozenset({"true", "false", "1", "0", "yes", "no"})
# Flags that may be given several times in one source; their values collect into a list.
REPEATABLE_FLAGS = frozenset({"validation_prompt"})


def read_argv(
    tokens: Sequence[str], where: str | Callable[[str], str] = "command line"
) -> Settings:
    """Flags: ``--key=value``, ``--key value`` and bare boolean ``--flag``; last one wins,
    except for REPEATABLE_FLAGS, whose values collect into a list in order.

    ``where`` is a place name, or a function from the flag's token to one (so flags in
    TRAINER_EXTRA_ARGS can point at the line that wrote them).
    """
    place = where if callable(where) else (lambda _token: where)
    settings: Settings = {}
    check = KeyCheck(place(tokens[0]) if tokens else "command line")
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token.startswith("--") or token == "--":
            raise ConfigError(
                f"unexpected argument {token!r} in {place(token)}; flags look like --key=value"
            )
        key, has_value, value = token[2:].partition("=")
        raw: object = value
        if not has_value:
            raw, i = _value_after(tokens, i, key, place(token))
        flag = check.flag(key, raw)
        if flag is None:
            continue
        if flag in REPEATABLE_FLAGS and flag in settings:
            before = settings[flag].value
            raw = [*(before if isinstance(before, list) else [before]), raw]
        settings[flag] = Setting(raw, f"--{key}", place(token))
    check.finish()  # every refused key of these flags in one ConfigError
    return settings


def _value_after(tokens: Sequence[str], i: int, key: str, where: str) -> tuple[object, int]:
    """The value of a flag written without ``=``, and the index after it.

    A boolean flag takes a following true/false word, else means true; an unknown key
    takes the next token unless it is another flag (then it reads as a bare switch).
    """
    from expertune.config.names import FIELDS, FLAG_ALIASES

    following = tokens[i] if i < len(tokens) else None
    name = FLAG_ALIASES.get(key, key)
    if name in BOOL_FLAGS:
        if following is not None and following.lower() in BOOL_WORDS:
            return following, i + 1
        return True, i
    if following is None or following.startswith("--"):
        if name not in FIELDS:
            return True, i
        raise ConfigError(f"--{key} in {where} needs a value, e.g. --{key}=VALUE")
    return following, i + 1
