"""LARS under DDP (2 processes, gloo, CPU) equals one process on the concatenated batch.

DDP all-reduces (averages) gradients before ``step()``, so every rank sees the global
gradient and LARS's norms are global norms. Also: sharded DTensor parameters are refused.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from lbconvert import LARS
from lbconvert.errors import LbconvertError
from tests.ddp import regression_batches, run_on_ranks, shard, tiny_mlp

STEPS = 4


def _data():
    return regression_batches(STEPS, 16)


def _train(model, batches, opt):
    for x, y in batches:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _worker(rank, world, out_dir):
    model = nn.parallel.DistributedDataParallel(tiny_mlp())
    opt = LARS(model.module, lr=2.0, momentum=0.9, weight_decay=1e-3, trust_clip=False)
    _train(model, shard(_data(), rank, world), opt)
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


@pytest.mark.slow
def test_ddp_equals_single_process(tmp_path):
    run_on_ranks(_worker, tmp_path)
    single = tiny_mlp()
    _train(single, _data(), LARS(single, lr=2.0, momentum=0.9, weight_decay=1e-3))
    start = tiny_mlp().state_dict()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in single.state_dict().items():
            assert not torch.equal(value, start[name])  # it trained
            assert torch.allclose(got[name], value, rtol=1e-5, atol=1e-6), name
        assert (tmp_path / f"dtensor{rank}.txt").read_text() == "yes"
