"""The gradient noise scale B_simple while training runs, fed from what training computes.

The estimator is :class:`lbconvert.measure.noise_scale.NoiseScale` (McCandlish et al. 2018,
appendix A; re-exported here with its helpers). Its two batch sizes come from what training
already computes:

- one device with gradient accumulation: the first micro-batch's gradient (B_small = the
  micro-batch) and the accumulated gradient (B_big = micro × steps) —
  :meth:`NoiseScale.observe_small` after the first ``backward()``, :meth:`NoiseScale.observe_big`
  before ``optimizer.step()``;
- DDP: the rank's own gradient before the all-reduce (B_small = per-rank batch) and the
  all-reduced one (B_big = per-rank × world) — :func:`register_ddp_hook`, a DDP communication
  hook that does the usual averaging all-reduce and records both squared norms per bucket.

Torch is imported inside functions.
"""

from __future__ import annotations

import threading
from typing import Any

from lbconvert.errors import LbconvertError
from lbconvert.measure.noise_scale import TAGS, NoiseScale, grad_sq_norm, unbiased_estimates

__all__ = ["TAGS", "NoiseScale", "grad_sq_norm", "register_ddp_hook", "unbiased_estimates"]


def register_ddp_hook(ddp_model: Any, estimator: NoiseScale, per_rank_batch: int) -> Any:
    """Install a DDP communication hook that averages gradients as DDP's default does and
    feeds ``estimator`` with the rank's own (B_small = ``per_rank_batch``) and the all-reduced
    (B_big = per-rank × world) squared gradient norms, summed over buckets, once per
    synchronised backward. Returns the hook state; call ``state.commit()`` before
    ``optimizer.step()`` (it is a no-op when no backward synchronised since the last one).

    Every rank keeps its own estimator (from its own shard: unbiased on each rank); log on
    rank 0.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        raise LbconvertError("register_ddp_hook: torch.distributed is not initialised: use"
                             " NoiseScale.observe_small/observe_big on one device")
    world = dist.get_world_size()
    if world < 2:
        raise LbconvertError("register_ddp_hook: world size 1 has one batch size only: use"
                             " observe_small/observe_big with gradient accumulation")
    state = _HookState(estimator, per_rank_batch, world, dist.group.WORLD)
    ddp_model.register_comm_hook(state, _noise_scale_hook)
    return state


class _HookState:
    """Per-backward sums of the local and the reduced squared norms (device tensors)."""

    def __init__(self, estimator: NoiseScale, per_rank: int, world: int, group: Any):
        self.estimator, self.per_rank, self.world, self.group = estimator, per_rank, world, group
        self.local: Any = None
        self.reduced: Any = None
        self._lock = threading.Lock()  # future callbacks may run on the backend's thread

    def commit(self) -> None:
        """Feed the estimator with this backward's sums and reset."""
        if self.local is None or self.reduced is None:
            return
        self.estimator.update(self.local, self.per_rank, self.reduced,
                              self.per_rank * self.world)
        self.local = self.reduced = None

    def add(self, which: str, t: Any) -> None:
        sq = t.detach().double().pow(2).sum()
        with self._lock:
            cur = getattr(self, which)
            setattr(self, which, sq if cur is None else cur + sq)


def _noise_scale_hook(state, bucket):  # no annotations: DDP checks them against its types
    """DDP's averaging all-reduce, recording ‖g_local‖² before and ‖g_global‖² after."""
    import torch.distributed as dist

    buf = bucket.buffer()
    state.add("local", buf)
    buf.div_(state.world)
    fut = dist.all_reduce(buf, group=state.group, async_op=True).get_future()

    def done(f):
        out = f.value()[0]
        state.add("reduced", out)
        return out

    return fut.then(done)
