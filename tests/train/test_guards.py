"""A non-finite loss or gradient stops the run at its exact step, before any checkpoint can
hold it; `--skip_nonfinite_steps N` skips up to N such steps, leaving the weights alone."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from train_support import metrics, train_args

from expertune.cli import main
from expertune.train import checkpoint as ckpt
from expertune.train import loop


class NanGrad(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient is not."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def poison(monkeypatch, steps: set[int], kind: str) -> None:
    """Make the loss (or only its gradient) non-finite at the given optimizer steps."""
    real = loop.loss_for
    calls = {"n": 0}

    def loss_for(loss_type, huber_c=None):
        loss_fn = real(loss_type, huber_c)

        def poisoned(pred, target, weights=None):
            calls["n"] += 1
            loss = loss_fn(pred, target, weights)
            if calls["n"] not in steps:
                return loss
            return loss * float("nan") if kind == "loss" else NanGrad.apply(loss)

        return poisoned

    monkeypatch.setattr(loop, "loss_for", loss_for)


@pytest.mark.parametrize("kind, said", [("loss", "loss is nan"), ("grad", "gradient norm is nan")])
def test_stops_at_the_exact_step_and_keeps_the_last_good_checkpoint(
    train_ws, tmp_path, monkeypatch, capsys, kind, said
):
    out = tmp_path / "out"
    poison(monkeypatch, {3}, kind)
    args = ["--max_train_steps=6", "--checkpointing_steps=2", "--logging_steps=100"]
    code = main(train_args(train_ws, out, *args))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("expertune: training stopped: ") and f"{said} at step 3" in err[-1]
    assert "checkpoint-2" in err[-1] and "Traceback" not in "\n".join(err)
    # step 4 was due a checkpoint; the check before saving caught step 3 first
    assert [p.name for p in ckpt.checkpoint_dirs(out)] == ["checkpoint-2"]
    ckpt.verify(out / "checkpoint-2")
    saved = load_file(out / "checkpoint-2" / "model.safetensors")
    assert all(torch.isfinite(v).all() for v in saved.values())
    assert not (out / "model_index.json").exists()  # no pipeline from a broken state
    assert [m["step"] for m in metrics(out)] == [1, 2, 3, 4]
    assert [m["finite"] for m in metrics(out)] == [True, True, False, False]


def test_skipping_leaves_weights_and_optimizer_untouched(train_ws, tmp_path, monkeypatch, caplog):
    out = tmp_path / "out"
    poison(monkeypatch, {3}, "grad")
    args = ["--max_train_steps=4", "--checkpointing_steps=1", "--skip_nonfinite_steps=1"]
    assert main(train_args(train_ws, out, *args)) == 0
    assert [m["skipped"] for m in metrics(out)] == [False, False, True, False]
    before, after = (load_file(out / f"checkpoint-{s}" / "model.safetensors") for s in (2, 3))
    assert all(torch.equal(before[k], after[k]) for k in before)
    opt2, opt3 = (
        torch.load(out / f"checkpoint-{s}" / "optimizer.pt", weights_only=True) for s in (2, 3)
    )
    assert torch.equal(
        opt2["optimizer"]["state"][0]["exp_avg"], opt3["optimizer"]["state"][0]["exp_avg"]
    )
    assert ckpt.verify(out / "checkpoint-4").skipped_steps == 1
    assert "skipping step 3" in caplog.text


def test_one_skip_more_than_allowed_stops(train_ws, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    poison(monkeypatch, {2, 4}, "loss")
    args = ["--max_train_steps=6", "--checkpointing_steps=1", "--skip_nonfinite_steps=1"]
    assert main(train_args(train_ws, out, *args)) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "at step 4" in last and "1 steps were already skipped" in last
    assert [p.name for p in ckpt.checkpoint_dirs(out)][-1] == "checkpoint-3"
