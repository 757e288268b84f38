"""LAMB under DDP (2 processes, gloo, CPU) equals one process on the concatenated batch.

DDP averages gradients before ``step()``, so every rank's Adam moments and trust-ratio norms
are those of the global gradient.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from lbconvert import LAMB
from tests.ddp import regression_batches, run_on_ranks, shard, tiny_mlp

STEPS = 4


def _data():
    return regression_batches(STEPS, 16)


def _train(model, batches, opt):
    for x, y in batches:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _opt(model):
    return LAMB(model, lr=0.05, weight_decay=0.01, clamp_value=10.0)


def _worker(rank, world, out_dir):
    model = nn.parallel.DistributedDataParallel(tiny_mlp())
    opt = _opt(model.module)
    _train(model, shard(_data(), rank, world), opt)
    torch.save(model.module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_ddp_equals_single_process(tmp_path):
    run_on_ranks(_worker, tmp_path)
    single = tiny_mlp()
    _train(single, _data(), _opt(single))
    start = tiny_mlp().state_dict()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        for name, value in single.state_dict().items():
            assert not torch.equal(value, start[name])  # it trained
            assert torch.allclose(got[name], value, rtol=1e-5, atol=1e-6), name
