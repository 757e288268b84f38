"""LARS under DDP (2 processes, gloo, CPU) equals one process on the concatenated batch.

DDP all-reduces (averages) gradients before ``step()``, so every rank sees the global
gradient and LARS's norms are global norms. Also: sharded DTensor parameters are refused.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from lbconvert import LARS
from lbconvert.errors import LbconvertError

STEPS = 4


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def _data():
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(16, 6, generator=gen), torch.randn(16, 3, generator=gen))
            for _ in range(STEPS)]


def _train(model, batches, opt):
    for x, y in batches:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        model = nn.parallel.DistributedDataParallel(_model())
        opt = LARS(model.module, lr=2.0, momentum=0.9, weight_decay=1e-3, trust_clip=False)
        half = 16 // world
        shards = [(x[rank * half:(rank + 1) * half], y[rank * half:(rank + 1) * half])
                  for x, y in _data()]
        _train(model, shards, opt)
        torch.save(model.module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
        # a sharded parameter must be refused, not stepped with a shard's norm
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.tensor import Shard, distribute_tensor

        mesh = init_device_mesh("cpu", (world,))
        sharded = nn.Parameter(distribute_tensor(torch.randn(4, 4), mesh, [Shard(0)]))
        try:
            LARS([sharded], lr=0.1)
            refused = "no"
        except LbconvertError as e:
            refused = "yes" if "DTensor" in str(e) else f"wrong message: {e}"
        with open(os.path.join(out_dir, f"dtensor{rank}.txt"), "w") as f:
            f.write(refused)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_equals_single_process(tmp_path):
    # fork: the children need not re-import torch (spawn costs ~20 s on a loaded 2-core box)
    mp.start_processes(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2,
                       join=True, start_method="fork")
    single = _model()
    _train(single, _data(), LARS(single, lr=2.0, momentum=0.9, weight_decay=1e-3))
    start = _model().state_dict()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in single.state_dict().items():
            assert not torch.equal(value, start[name])  # it trained
            assert torch.allclose(got[name], value, rtol=1e-5, atol=1e-6), name
        assert (tmp_path / f"dtensor{rank}.txt").read_text() == "yes"
