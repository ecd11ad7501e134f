"""Errors a user can cause and fix; the CLI turns them into one line and exit code 2.

`Interrupted` is not an error but a stop the user asked for (Ctrl-C, SIGTERM): the CLI
exits 128 + the signal number (130 for Ctrl-C) after its one line.
"""

from __future__ import annotations

import signal


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


class SaveError(UserError):
    """A checkpoint or the pipeline could not be written (disk full, no permission).

    Whatever was complete before (the previous checkpoint, the previous pipeline) is intact.
    """

    kind = "save failed"


class Interrupted(KeyboardInterrupt):
    """The run stopped on a signal at a step boundary, after saving what was due."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum
        self.message = message

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(self.signum)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    def __str__(self) -> str:
        return self.message
