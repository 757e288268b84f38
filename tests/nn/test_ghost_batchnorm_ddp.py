"""GhostBatchNorm under DDP (2 processes, gloo, CPU): ghost batches are per device.

Rank r holds the r-th contiguous half of the global batch, so its ghost batches are exactly
the global batch's ghost batches on that half: training equals one process on the whole
batch (DDP averages the gradients), and no collective is needed for the statistics (the
SyncBatchNorm semantics are given up on purpose). Running statistics stay per rank, as with
BatchNorm under DDP.
"""

from __future__ import annotations

import os

import pytest
import torch
import torch.nn as nn

from lbconvert import GhostBatchNorm
from tests.ddp import run_on_ranks, shard

STEPS, BATCH, GHOST = 3, 24, 4


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), GhostBatchNorm(4, GHOST), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 4 * 4, 3))


def _data():
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(BATCH, 3, 6, 6, generator=gen), torch.randn(BATCH, 3, generator=gen))
            for _ in range(STEPS)]


def _train(model, batches):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for x, y in batches:
        opt.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        opt.step()


def _worker(rank, world, out_dir):
    model = nn.parallel.DistributedDataParallel(_model(), broadcast_buffers=False)
    _train(model, shard(_data(), rank, world))
    torch.save(model.module.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))


@pytest.mark.slow
def test_ddp_ghost_batches_are_per_device(tmp_path):
    run_on_ranks(_worker, tmp_path)
    single = _model()
    _train(single, _data())
    start = _model().state_dict()
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, value in single.state_dict().items():
        if "running" in name or "num_batches" in name:
            continue
        assert not torch.equal(value, start[name]), name  # it trained
        for got in ranks:
            torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6)
    # Each rank's running statistics saw its own ghost batches only: 3 per step.
    assert all(int(got["1.num_batches_tracked"]) == STEPS * (BATCH // 2 // GHOST)
               for got in ranks)
    assert not torch.equal(ranks[0]["1.running_mean"], ranks[1]["1.running_mean"])
