"""Monitors under DDP (2 processes, gloo, CPU).

- DiffusionMonitor on a DDP-wrapped model measures the same distances as one process training
  on the concatenated batch, logs on rank 0 only, and refuses DTensor (FSDP2) parameters.
- The noise-scale communication hook records each rank's own squared gradient norm (B_small =
  per-rank batch) and the all-reduced one (B_big), equal to an independent computation on the
  rank's shard and on the whole batch, while the model trains exactly as with DDP's default.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn as nn

from lbconvert.errors import LbconvertError
from lbconvert.monitor.diffusion import DISTANCE_TAG, DiffusionMonitor
from lbconvert.monitor.noise_scale import NoiseScale, register_ddp_hook
from tests.ddp import regression_batches, run_on_ranks, shard, tiny_mlp

STEPS = 3
BATCH = 16


def _data():
    return regression_batches(STEPS, BATCH)


def _sq_grad(model, x, y):
    model.zero_grad()
    nn.functional.mse_loss(model(x), y).backward()
    return sum(float(p.grad.double().pow(2).sum()) for p in model.parameters())


def _worker(rank, world, out_dir):
    model = nn.parallel.DistributedDataParallel(tiny_mlp())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = DiffusionMonitor(model, opt, every_n_steps=1)
    est = NoiseScale(ema=1.0)
    hook = register_ddp_hook(model, est, per_rank_batch=BATCH // world)
    logged, local_ref, global_ref, recorded = [], [], [], []
    for step, ((x, y), (xr, yr)) in enumerate(zip(_data(), shard(_data(), rank, world)),
                                              start=1):
        ref = tiny_mlp()
        ref.load_state_dict(model.module.state_dict())
        local_ref.append(_sq_grad(ref, xr, yr))
        global_ref.append(_sq_grad(ref, x, y))
        opt.zero_grad()
        nn.functional.mse_loss(model(xr), yr).backward()
        recorded.append((float(hook.local), float(hook.reduced)))
        hook.commit()
        opt.step()
        mon.log_to(lambda tag, v, s: logged.append((tag, v, s)), step)
    out = {"distance": mon.last[DISTANCE_TAG], "logged": len(logged),
           "local_ref": local_ref, "global_ref": global_ref, "recorded": recorded,
           "count": est.count}
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import Shard, distribute_tensor

    mesh = init_device_mesh("cpu", (world,))
    sharded = nn.Linear(4, 4)
    sharded.weight = nn.Parameter(distribute_tensor(torch.randn(4, 4), mesh, [Shard(0)]))
    try:
        DiffusionMonitor(sharded)
        out["refused"] = "no"
    except LbconvertError as e:
        out["refused"] = "yes" if "DTensor" in str(e) else f"wrong message: {e}"
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(out, f)


@pytest.mark.slow
def test_ddp_monitor_and_noise_scale_hook(tmp_path):
    run_on_ranks(_worker, tmp_path)
    single = tiny_mlp()
    w0 = [p.detach().clone() for p in single.parameters()]
    opt = torch.optim.SGD(single.parameters(), lr=0.1)
    for x, y in _data():
        opt.zero_grad()
        nn.functional.mse_loss(single(x), y).backward()
        opt.step()
    dist_ref = sum(float((p.detach() - q).pow(2).sum()) for p, q in
                   zip(single.parameters(), w0)) ** 0.5
    outs = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, out in enumerate(outs):
        assert out["distance"] == pytest.approx(dist_ref, rel=1e-5)
        assert out["logged"] == (STEPS * 3 if rank == 0 else 0)  # total + groups "0", "2"
        for (loc, glob), lref, gref in zip(out["recorded"], out["local_ref"],
                                           out["global_ref"]):
            assert loc == pytest.approx(lref, rel=1e-5)
            assert glob == pytest.approx(gref, rel=1e-5)
        assert out["count"] == STEPS
        assert out["refused"] == "yes"
    assert outs[0]["local_ref"] != outs[1]["local_ref"]  # each rank its own shard
