"""--mixed_precision through accelerate: bf16 autocasts the UNet's compute and keeps fp32
master weights (runs on CPU); fp16 without a GPU, which accelerate would silently run in
fp32, is refused in one line before anything is written."""

from __future__ import annotations

import pytest
import torch
from accelerate.state import AcceleratorState
from train_support import train_args

from expertune.cli import main
from expertune.config import load_config
from expertune.errors import ConfigError
from expertune.train.setup import check_precision


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one state per process: a bf16 run must neither see nor pin another's."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def test_bf16_computes_in_bf16_and_updates_fp32_masters(train_ws, tmp_path, fresh_accelerate_state):
    from expertune.train.loop import Trainer

    flags = train_args(train_ws, tmp_path / "out", "--max_train_steps=2", "--mixed_precision=bf16")
    trainer = Trainer(load_config(str(train_ws / "config" / "stage1.env"), flags[3:])).setup()
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    layer = unet.down_blocks[1].attentions[0].proj_in
    seen: list[torch.dtype] = []
    layer.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    before = layer.weight.detach().clone()
    trainer.train()
    assert seen == [torch.bfloat16, torch.bfloat16]  # each step's forward under autocast
    assert layer.weight.dtype == torch.float32 and not torch.equal(layer.weight, before)


def test_fp16_without_a_gpu_is_one_line_and_writes_nothing(train_ws, tmp_path, capsys):
    out = tmp_path / "out"

    def cfg(precision: str):
        return load_config(
            None, ["--model_name=expertune/tiny-sdxl", f"--mixed_precision={precision}"]
        )

    with pytest.raises(ConfigError, match="--mixed_precision=bf16"):
        check_precision(cfg("fp16"), gpu=False)
    check_precision(cfg("fp16"), gpu=True)
    check_precision(cfg("bf16"), gpu=False)
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        return  # the command below trains on a GPU machine
    assert main(train_args(train_ws, out, "--mixed_precision=fp16")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--mixed_precision=fp16 needs a GPU" in err[0]
    assert not out.exists()
