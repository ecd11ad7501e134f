"""`expertune train` in this process (under torchrun: one rank), recording what this rank holds.

    python rank_worker.py RECORD_DIR CONFIG [training flags...]

Runs the real training (run_training: steps, checkpoints, publish) and then writes
RECORD_DIR/rank{R}.safetensors (this rank's trainable weights) and rank{R}.json (how many
times this rank entered accelerate's state-dict gathering, and how many encoder forward
passes it ran while the caches were filled). Nothing in training is
replaced: get_state_dict is counted and then called as it is.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from accelerate import Accelerator
from safetensors.torch import save_file

calls = {"get_state_dict": 0}
_original = Accelerator.get_state_dict


def _counted(self, model, unwrap=True):
    calls["get_state_dict"] += 1
    return _original(self, model, unwrap)


class _KeepTrainer:
    """A callback that only keeps a reference to the trainer (training is unchanged)."""

    trainer = None

    def on_step_end(self, trainer) -> None:
        pass

    def on_train_end(self, trainer) -> None:
        _KeepTrainer.trainer = trainer


def main(record: Path, config: str, flags: list[str]) -> None:
    from expertune.config import load_config
    from expertune.train.run import run_training

    Accelerator.get_state_dict = _counted
    run_training(load_config(config, flags), callbacks=[_KeepTrainer()])
    trainer = _KeepTrainer.trainer
    rank = int(os.environ.get("RANK", "0"))
    model = trainer.accelerator.unwrap_model(trainer.unet)
    weights = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()}
    record.mkdir(parents=True, exist_ok=True)
    save_file(
        {n: w for n, w in weights.items() if n in trainer.trainable},
        record / f"rank{rank}.safetensors",
    )
    passes = trainer.data.stats.encoder_forward_passes  # this rank's, while filling the cache
    (record / f"rank{rank}.json").write_text(json.dumps({**calls, "encoder_passes": passes}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], sys.argv[3:])
