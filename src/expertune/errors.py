"""Errors a user can cause and fix; the CLI turns them into one line and exit code 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input (config, data, model reference), not a bug.

    The message is one line: what is wrong (naming the key, file or value) and the fix.
    """

    kind = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(UserError):
    """A config file, key, flag or value is wrong."""

    kind = "config error"


class DataError(UserError):
    """A dataset folder, image or caption file is missing or unusable."""

    kind = "data error"


class ModelReferenceError(UserError):
    """A model name or folder cannot be loaded (missing, offline, wrong family)."""

    kind = "model error"


class TrainingStopped(UserError):
    """Training cannot go on (a non-finite loss, say); the last good checkpoint is kept."""

    kind = "training stopped"
