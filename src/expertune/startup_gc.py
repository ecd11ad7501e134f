"""Python's cyclic garbage collector held off while a training command starts up, then
told that everything alive at that point is permanent.

Importing torch, diffusers, transformers and peft and loading the model parts allocates
millions of long-lived objects (modules, functions, classes, tensors' Python wrappers).
Meanwhile the collector keeps running full passes over that growing heap: 7 of them
during `import expertune.train.run`, none of which frees anything that matters. Holding
it off until the trainer is set up and then calling `gc.freeze()` moves every object
alive into the permanent generation, so the passes during training no longer walk the
libraries' objects either. Reference counting frees everything as usual meanwhile; only
cycles wait, and start-up makes few.

`hold()` is called by the CLI for the commands that train; `settle()` by the training
run once its trainer is set up, and by the CLI when the command ends (a no-op then).
"""

from __future__ import annotations

import gc

_held = False


def hold() -> None:
    """Turn the cyclic collector off until `settle()` (if it was on)."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def settle() -> None:
    """Freeze what is alive now into the permanent generation and turn the collector
    back on; nothing happens unless `hold()` turned it off."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()
