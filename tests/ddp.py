"""Shared set-up for the multi-process (DDP) tests: gloo process groups on the CPU.

``run_on_ranks(worker, tmp_path)`` runs ``worker(rank, world, out_dir)`` in ``world`` forked
processes, each inside its own gloo process group (fork: the children need not re-import
torch; spawn costs ~20 s on a loaded 2-core machine). ``shard`` gives rank r its contiguous
share of each (x, y) batch, as a DistributedSampler over consecutive samples would.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn


def _entry(rank, worker, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        worker(rank, world, out_dir)
    finally:
        dist.destroy_process_group()


def run_on_ranks(worker, tmp_path, world: int = 2) -> None:
    """``worker(rank, world, out_dir)`` on ``world`` gloo ranks; raises if any rank fails."""
    mp.start_processes(_entry, args=(worker, world, str(tmp_path / "init"), str(tmp_path)),
                       nprocs=world, join=True, start_method="fork")


def shard(batches, rank: int, world: int):
    """Rank ``rank``'s contiguous share of every (x, y) batch."""
    out = []
    for x, y in batches:
        n = x.shape[0] // world
        out.append((x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]))
    return out


def tiny_mlp() -> nn.Module:
    """The same small regression model on every rank and in the single-process reference."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def regression_batches(steps: int, batch: int):
    """``steps`` fixed (x, y) batches of ``batch`` samples for :func:`tiny_mlp`."""
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, 6, generator=gen), torch.randn(batch, 3, generator=gen))
            for _ in range(steps)]
