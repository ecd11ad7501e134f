"""checkpoint.py's gathering on a UNet really sharded with FSDP2 (torchrun, gloo, CPU).

    python -m torch.distributed.run --nproc_per_node 2 fsdp2_worker.py UNET_DIR OUT

accelerate picks FSDP only with a GPU, so the UNet is sharded here with torch's own
`fully_shard`, and `ShardedAccelerator` answers what checkpoint.py and run.py ask of an
Accelerator under FSDP2, with accelerate's own `get_state_dict` doing the gathering.
Each rank writes OUT/rank{R}.json with what it checked.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedType
from diffusers import UNet2DConditionModel
from torch.distributed.fsdp import fully_shard

from expertune.train import checkpoint as ckpt
from expertune.train.run import gather_unet


class ShardedAccelerator:
    """The parts of accelerate's Accelerator the save/resume code uses, under FSDP2."""

    distributed_type = DistributedType.FSDP
    is_fsdp2 = True
    get_state_dict = Accelerator.get_state_dict  # accelerate's own gathering

    def __init__(self) -> None:
        self.process_index, self.num_processes = dist.get_rank(), dist.get_world_size()
        self.is_main_process = self.process_index == 0

    def unwrap_model(self, model):
        return model


def _step(model, optimizer) -> None:
    loss = sum((p.float() ** 2).mean() for p in model.parameters())
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def _local(model) -> dict[str, torch.Tensor]:
    return {n: p.to_local().detach().clone() for n, p in model.named_parameters()}


def main(unet_dir: Path, out: Path) -> None:
    dist.init_process_group("gloo")
    acc, rank = ShardedAccelerator(), dist.get_rank()
    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_pretrained(unet_dir)
    whole = copy.deepcopy(unet)  # the same training, unsharded, for comparison
    for block in [*unet.down_blocks, unet.mid_block, *unet.up_blocks]:
        fully_shard(block)
    fully_shard(unet)
    names = [n for n, _ in unet.named_parameters()]
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    whole_opt = torch.optim.AdamW(whole.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    _step(unet, optimizer)
    _step(whole, whole_opt)
    sharded = any(p.to_local().numel() < p.numel() for p in unet.parameters())

    weights = ckpt.gather_weights(acc, unet, names)  # every rank, collective
    opt_state = ckpt.gather_optimizer(acc, unet, optimizer)
    state = ckpt.LoopState(step=1, run_id="fsdp2")
    if rank == 0:
        ckpt.save_checkpoint(out, state, weights, opt_state, sched, [])
    dist.barrier()
    saved_local, saved_avg = (
        _local(unet),
        {n: optimizer.state[p]["exp_avg"].to_local().clone() for n, p in unet.named_parameters()},
    )
    whole_ref = dict(whole.named_parameters())
    gathered_ok = rank != 0 or (
        sorted(weights) == sorted(names)
        and all(torch.allclose(weights[n], whole_ref[n], rtol=1e-5, atol=1e-7) for n in names)
    )

    _step(unet, optimizer)  # move on, then resume from the checkpoint on every rank
    path = out / "checkpoint-1"
    _, loaded, _ = ckpt.load_checkpoint(path, optimizer, sched, rank, model=unet)
    ckpt.load_weights(acc, unet, loaded)
    now = _local(unet)
    weights_back = all(torch.equal(now[n], saved_local[n]) for n in names)
    avg_back = all(
        torch.equal(optimizer.state[p]["exp_avg"].to_local(), saved_avg[n])
        for n, p in unet.named_parameters()
    )

    trainer = SimpleNamespace(accelerator=acc, unet=unet, ema=None)
    trainer.cfg = SimpleNamespace(lora_type="none", controlnet=False)
    published = gather_unet(trainer)  # every rank, collective; the whole UNet on rank 0
    publish_ok = (published is None) == (rank != 0)
    if published is not None:
        plain = dict(published.named_parameters())
        publish_ok = type(published) is UNet2DConditionModel and all(
            torch.equal(plain[n], loaded[n]) for n in names
        )
    report = {
        "sharded": sharded,
        "gathered_on_rank0_only": (len(weights) > 0) == (rank == 0),
        "gathered_equals_unsharded_training": gathered_ok,
        "weights_back": weights_back,
        "optimizer_back": avg_back,
        "publish": publish_ok,
    }
    (out / f"rank{rank}.json").write_text(json.dumps(report))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
