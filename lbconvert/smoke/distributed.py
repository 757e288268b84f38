"""The smoke arms data-parallel over several processes (torchrun / ``--nproc-per-node``).

Under ``torch.distributed.run`` (torchrun's elastic launcher) every process has ``RANK``,
``LOCAL_RANK`` and ``WORLD_SIZE`` in its environment; :func:`from_env` joins the process group
(NCCL on CUDA, gloo on the CPU, with a timeout so a lost peer ends a collective with an error
instead of a hang). Each arm's update then takes the same global batch of sample indices on
every rank and gives rank r the contiguous share ``[r·b/K, (r+1)·b/K)``; the model is wrapped in
``DistributedDataParallel`` (mean all-reduce of the gradients in backward, ``no_sync`` on the
accumulated micro-batches but the last), so LARS steps on the all-reduced gradient, and
GhostBatchNorm's ghost batches lie inside each rank's share — the layout of the real run.
With shares that are multiples of the ghost size this equals one process on the whole batch.

Torch is imported inside functions.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import socket
from typing import TYPE_CHECKING, Any

from lbconvert._text import first_line
from lbconvert.errors import LbconvertError

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

#: Seconds a collective may wait for the other ranks before it fails (not hangs).
DEFAULT_TIMEOUT_S = 300.0
#: Set by ``lbconvert ... --nproc-per-node K`` in the workers it launches: the launcher, not
#: rank 0, reports a failure (one line), so every worker stays silent.
LAUNCHED_ENV = "LBCONVERT_LAUNCHED"


@dataclasses.dataclass
class DistContext:
    """This process's place in the data-parallel smoke run."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: str
    timeout_s: float = DEFAULT_TIMEOUT_S
    owns_group: bool = False  # this module created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that reports."""
        return self.rank == 0


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def env_rank() -> int:
    """``RANK`` from the environment (0 when not launched by torchrun)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def from_env(device: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext | None:
    """Join (or reuse) the process group torchrun set up; ``None`` for a single process.

    ``device`` is the resolved smoke device (``cpu`` or ``cuda[:N]``): on CUDA each rank
    takes ``cuda:LOCAL_RANK`` and NCCL, on the CPU gloo.
    """
    import torch
    import torch.distributed as dist

    world = env_world_size()
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return None
    if not dist.is_available():
        raise LbconvertError("WORLD_SIZE > 1 but this torch has no torch.distributed",
                             hint="install a torch build with distributed support")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        if local_rank >= torch.cuda.device_count():
            raise LbconvertError(
                f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)",
                hint="use --nproc-per-node at most the number of GPUs per node",
            )
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            timeout=datetime.timedelta(seconds=timeout_s),
            device_id=torch.device(device) if cuda else None,
        )
        owns = True
    ctx = DistContext(
        rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
        backend=dist.get_backend(), device=device, timeout_s=timeout_s, owns_group=owns,
    )
    return ctx if ctx.world_size > 1 else None


def close(ctx: DistContext | None) -> None:
    """Leave the process group if :func:`from_env` created it."""
    if ctx is not None and ctx.owns_group:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def share_of(batch: int, ctx: DistContext | None) -> int:
    """Samples per rank of a ``batch``-sample update."""
    return batch if ctx is None else batch // ctx.world_size


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` in DistributedDataParallel on this rank's device (mean all-reduce)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
    return DDP(model, device_ids=ids)


def broadcast_(tensors: list[torch.Tensor], ctx: DistContext) -> None:
    """Overwrite ``tensors`` on every rank with rank 0's (models, the data pool)."""
    import torch.distributed as dist

    with _collective(ctx, "broadcast"):
        for t in tensors:
            dist.broadcast(t.data, src=0)


def all_reduce(values: list[float], ctx: DistContext, op: str = "sum") -> list[float]:
    """``values`` reduced over the ranks (``sum``, ``max`` or ``min``), one collective."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    with _collective(ctx, f"all_reduce({op})"):
        dist.all_reduce(t, op=ops[op])
    return t.cpu().tolist()


def broadcast_values(values: list[float], ctx: DistContext) -> list[float]:
    """Rank 0's ``values`` on every rank (a decision all ranks must take alike)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    with _collective(ctx, "broadcast"):
        dist.broadcast(t, src=0)
    return t.cpu().tolist()


def gather(obj: Any, ctx: DistContext) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank."""
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    with _collective(ctx, "all_gather_object"):
        dist.all_gather_object(out, obj)
    return out


def peak_memory(device: str) -> tuple[int | None, str]:
    """Peak memory of this rank so far: CUDA max allocated, else the process's peak RSS."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.max_memory_allocated(device)), "cuda max_memory_allocated"
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process peak RSS"
    except (ImportError, OSError):  # pragma: no cover - not on Linux/macOS
        return None, "unknown"


def reset_peak_memory(device: str) -> None:
    """Start the CUDA peak-memory count here (the CPU's peak RSS cannot be reset)."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)


def host() -> str:
    """This machine's name (ranks of a multi-node run differ)."""
    return socket.gethostname()


class _collective:
    """Turn a failed or timed-out collective into one clear error naming the rank."""

    def __init__(self, ctx: DistContext, what: str):
        self.ctx, self.what = ctx, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if exc is None or isinstance(exc, LbconvertError) or not isinstance(exc, RuntimeError):
            return False
        raise LbconvertError(
            f"smoke test, rank {self.ctx.rank} of {self.ctx.world_size}: {self.what} with the "
            f"other ranks failed ({type(exc).__name__}: {first_line(exc, 200)}); "
            "another rank failed or stopped answering",
            hint="see that rank's error; the process-group timeout is "
            f"{self.ctx.timeout_s:g}s",
        ) from exc
