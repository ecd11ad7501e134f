"""`moe --parallel N` hands each worker its own GPU: round robin over the visible ones."""

from __future__ import annotations

from expertune.app.moe_parallel import gpu_ids, worker_env


def test_each_worker_is_pinned_to_one_visible_gpu_round_robin(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5,7")
    devices = gpu_ids()
    assert devices == ["2", "5", "7"]
    base = {"PATH": "/bin", "CUDA_VISIBLE_DEVICES": "2,5,7"}
    pinned = [worker_env(i, devices, base)["CUDA_VISIBLE_DEVICES"] for i in range(4)]
    assert pinned == ["2", "5", "7", "2"]
    assert (
        worker_env(0, devices, base)["PATH"] == "/bin" and base["CUDA_VISIBLE_DEVICES"] == "2,5,7"
    )


def test_one_gpu_or_none_leaves_the_environment_as_it_is(monkeypatch):
    base = {"CUDA_VISIBLE_DEVICES": "3"}
    assert worker_env(1, ["3"], base) == base
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    import torch

    assert gpu_ids() == [str(i) for i in range(torch.cuda.device_count())]  # every visible GPU
    assert "CUDA_VISIBLE_DEVICES" not in worker_env(0, [], {})
