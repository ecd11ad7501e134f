"""Configuration: read config.env / .json / .toml and flags once, at the edge.

``load_config`` is the only way in; everything below config/ receives the frozen
``TrainConfig`` it returns and never reads the environment or argv. Importing this
package stays free of torch, diffusers and transformers so ``expertune config show`` is
fast.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from expertune.config.build import build_config
from expertune.config.schema import TrainConfig
from expertune.config.show import show_config
from expertune.config.sources import read_argv, read_file

__all__ = ["TrainConfig", "load_config", "show_config"]


def load_config(path: str | os.PathLike[str] | None, argv: Sequence[str] = ()) -> TrainConfig:
    """The TrainConfig from a config file (or None: flags only) and overriding flags.

    Raises ConfigError (one line naming the key and the fix) for anything wrong.
    """
    settings = read_file(path) if path is not None else {}
    settings.update(read_argv(list(argv)))
    return build_config(settings)
