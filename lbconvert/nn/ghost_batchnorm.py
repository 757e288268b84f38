"""Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017, "Train longer, generalize better",
Algorithm 1): in training, normalize each "ghost" batch of ``ghost_batch_size`` samples with its
own mean and variance; at inference use the running (population) statistics like BatchNorm.

``GhostBatchNorm`` subclasses ``torch.nn.modules.batchnorm._BatchNorm`` so that its parameters,
buffers and state-dict keys (``weight, bias, running_mean, running_var, num_batches_tracked``)
are exactly those of the BatchNorm it replaces: a converted checkpoint loads with
``strict=True`` into the user's unmodified model.

Semantics, all pinned by tests against ``nn.BatchNorm`` applied chunk by chunk:

* ghost batches are consecutive slices along dim 0 of ``ghost_batch_size`` samples; a
  remainder under half a ghost batch, or one BatchNorm could not normalize (one value per
  channel), is merged into the last full ghost batch, a larger one is a ghost batch of its
  own (``lbconvert.nn.ghost_chunks``, which says why merging rather than balancing); a batch
  below 1.5 ghost batches is plain BatchNorm. GhostBatchNorm trains on every batch BatchNorm
  trains on;
* running statistics end up exactly as if BatchNorm had been called on each ghost batch in turn
  (``num_batches_tracked`` grows by the number of ghost batches; ``momentum=None`` is the
  cumulative average over ghost batches);
* in eval mode the module is ``F.batch_norm`` with the running statistics, exactly BatchNorm
  (and exports to ONNX as an ordinary ``BatchNormalization``);
* under DDP each process splits its own per-device batch: ghost batches never span devices
  and no statistics are communicated (SyncBatchNorm semantics are given up on purpose).

How the ghost batches are computed is a speed choice; every strategy computes the same
function up to floating-point rounding ("strategy"): "loop" calls BatchNorm once per ghost
batch; "native" (CPU) computes each ghost batch's statistics in one shifted pass and writes
into slices of one output with BatchNorm's CPU kernels (see ``_gbn_native``); "vector"
computes all ghost batches' statistics at once over a (N/ghost, ghost, C, ...) view with an
explicit backward, in plain torch ops (see ``_gbn_vector``); "fold" folds the
ghost index into the channel axis for one call and applies the closed form of the sequential
running-stat updates; "triton" (CUDA) does a whole pass (all ghost batches, the running-stat
update, the weight/bias gradient sums) in one launch (see ``_gbn_triton``). "auto" picks per
device and input (:func:`pick_strategy`).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from lbconvert.nn.ghost_chunks import chunk_sizes, ghost_split
from lbconvert.nn.running_stats import update_running_stats
from lbconvert.plan.devices import SMALL_GHOST_BATCH

__all__ = ["GhostBatchNorm", "LazyGhostBatchNorm", "ghost_batch_norm", "pick_strategy",
           "STRATEGIES"]

Strategy = Literal["auto", "loop", "native", "vector", "fold", "triton"]
STRATEGIES: tuple[str, ...] = ("loop", "native", "vector", "fold", "triton")
#: Strategies ``auto`` may pick on CUDA: those whose GPU path has run on hardware. "loop" and
#: "fold" are compositions of PyTorch's own BatchNorm CUDA kernels; "triton" (lbconvert's own
#: one-launch kernels) joins once ``pytest -m gpu`` passes on a GPU (docs/gpu-kernels.md).
CUDA_VERIFIED: frozenset[str] = frozenset({"loop", "fold"})


def _bn_chunk(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    num_batches_tracked: Tensor | None,
    track: bool,
    momentum: float | None,
    eps: float,
) -> Tensor:
    """One training-mode BatchNorm call, with the buffer update ``_BatchNorm.forward`` does."""
    factor = 0.0 if momentum is None else momentum
    if track and num_batches_tracked is not None:
        num_batches_tracked.add_(1)
        if momentum is None:
            factor = 1.0 / float(num_batches_tracked)
    return F.batch_norm(
        x,
        running_mean if track else None,
        running_var if track else None,
        weight,
        bias,
        True,
        factor,
        eps,
    )


def _fold(
    x: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    num_batches_tracked: Tensor | None,
    track: bool,
    momentum: float | None,
    eps: float,
    n_ghosts: int,
    ghost: int,
) -> Tensor:
    """Normalize ``n_ghosts`` full ghost batches with one ``F.batch_norm`` call.

    The ghost index is folded into the channel axis, (G·n, C, *S) → (n, G·C, *S), so each
    (ghost, channel) pair is one BatchNorm channel. Each ghost's own batch mean and unbiased
    variance come back through scratch buffers updated with momentum 1 (an exact copy), and
    the real running buffers then get the closed-form sequential update.
    """
    c = x.shape[1]
    spatial = x.shape[2:]
    xf = x.reshape(n_ghosts, ghost, c, *spatial).transpose(0, 1)
    xf = xf.reshape(ghost, n_ghosts * c, *spatial)
    scratch = scratch_mean = scratch_var = None
    if track and running_mean is not None:
        scratch = torch.zeros(2, n_ghosts * c, device=x.device, dtype=running_mean.dtype)
        scratch_mean, scratch_var = scratch[0], scratch[1]
    y = F.batch_norm(
        xf,
        scratch_mean,
        scratch_var,
        None if weight is None else weight.repeat(n_ghosts),
        None if bias is None else bias.repeat(n_ghosts),
        True,
        1.0,
        eps,
    )
    if scratch is not None:
        update_running_stats(running_mean, running_var, num_batches_tracked,
                             scratch.view(2, n_ghosts, c), momentum)
    y = y.reshape(ghost, n_ghosts, c, *spatial).transpose(0, 1)
    return y.reshape(n_ghosts * ghost, c, *spatial)


#: CPU: a ghost batch with at least this many values per channel (samples × spatial
#: positions) and at least :data:`NATIVE_MIN_BYTES` goes through "native" (BatchNorm's kernels
#: per ghost batch), any other through "vector" (all ghost batches at once), whose fixed cost
#: does not grow with the number of ghost batches. (N, C) inputs (at most 128 values at ghost
#: 128) always measured faster with vector. Crossover rows: docs/ghost-batchnorm-speed.md,
#: "How auto picks".
NATIVE_MIN_VALUES = 512
#: ... and the bytes of one ghost batch: native's cost is a few kernel calls per ghost batch,
#: which a small ghost batch does not amortize (same rows).
NATIVE_MIN_BYTES = 128 << 10


def pick_strategy(x: Tensor, ghost: int) -> str:
    """The strategy ``auto`` uses for this input (rule from benchmarks/ghost_batchnorm.py).

    Under torch.compile (any device): "fold", one BatchNorm over ghost-folded channels, so the
    graph has the same nodes whatever the number of ghost batches and Inductor fuses it.
    CPU eager: "native" for ghost batches of at least :data:`NATIVE_MIN_VALUES` values per
    channel and :data:`NATIVE_MIN_BYTES` bytes, else "vector" (see both). CUDA eager: only
    strategies in :data:`CUDA_VERIFIED` (docs/gpu-kernels.md): the one-launch Triton kernels
    only once they have passed the GPU test suite on hardware (not yet: they have run under
    Triton's interpreter only, which does not test memory ordering between programs, so
    ``strategy="triton"`` is opt-in); else "fold" for many ghost batches or half precision
    with few wide channels, where one BatchNorm call over ghost-folded channels beat the
    per-ghost loop, and "loop" otherwise.
    """
    if torch.compiler.is_compiling():
        return "fold"
    if x.device.type != "cuda":
        values = ghost * math.prod(x.shape[2:])
        big = values * x.shape[1] * x.element_size() >= NATIVE_MIN_BYTES
        return "native" if values >= NATIVE_MIN_VALUES and big else "vector"
    from lbconvert.nn import _gbn_triton

    if "triton" in CUDA_VERIFIED and _gbn_triton.available(x):
        return "triton"
    n_ghosts = x.shape[0] // ghost
    if n_ghosts >= 16:
        return "fold"
    if x.element_size() <= 2 and x.shape[1] <= 64 and x[0, 0].numel() >= 56 * 56:
        return "fold"
    return "loop"


@torch.fx.wrap
def ghost_batch_norm(
    input: Tensor,
    running_mean: Tensor | None,
    running_var: Tensor | None,
    weight: Tensor | None,
    bias: Tensor | None,
    num_batches_tracked: Tensor | None,
    training: bool,
    track_running_stats: bool,
    momentum: float | None,
    eps: float,
    ghost_batch_size: int,
    strategy: str = "auto",
) -> Tensor:
    """Functional Ghost BatchNorm (Hoffer et al. 2017, Algorithm 1); see the module docstring.

    Wrapped with ``torch.fx.wrap`` so that fx tracing records one call instead of the chunk loop.
    """
    if input.dim() < 2:
        raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")
    track = track_running_stats and running_mean is not None
    if not training:
        # Exactly _BatchNorm.forward in eval: running stats, or batch stats when there are none.
        return F.batch_norm(
            input, running_mean, running_var, weight, bias, running_mean is None,
            0.0 if momentum is None else momentum, eps,
        )
    full, size, tail = ghost_split(input.shape[0], ghost_batch_size,
                                   math.prod(input.shape[2:]))
    if full + (tail > 0) <= 1:
        # One ghost batch (batch below 1.5 ghost batches): plain BatchNorm, its errors included.
        return _bn_chunk(input, running_mean, running_var, weight, bias,
                         num_batches_tracked, track, momentum, eps)
    if strategy == "auto":
        strategy = pick_strategy(input, size)
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown GhostBatchNorm strategy {strategy!r}: use one of auto, "
                         + ", ".join(STRATEGIES))
    args = (running_mean, running_var, weight, bias, num_batches_tracked, track, momentum, eps)
    if strategy == "triton":
        from lbconvert.nn import _gbn_triton

        if _gbn_triton.available(input):
            # The kernels take equal ghost batches and one shorter last one; a merged (longer)
            # last ghost batch is one more BatchNorm call after them, in order.
            cut = full * size if tail > size else input.shape[0]
            y = _gbn_triton.ghost_batch_norm_cuda(
                input[:cut], weight, bias, running_mean if track else None,
                running_var if track else None, num_batches_tracked if track else None,
                size, eps, momentum)
            return y if cut == input.shape[0] else torch.cat([y, _bn_chunk(input[cut:], *args)])
        strategy = "loop"
    if strategy == "vector":
        from lbconvert.nn import _gbn_vector

        return _gbn_vector.vector_ghost_batch_norm(input, *args, full, size, tail)
    if strategy == "fold" and full >= 1:
        y = _fold(input[:full * size], *args, full, size)
        if tail:
            y = torch.cat([y, _bn_chunk(input[full * size:], *args)])
        if input.dim() == 4 and not input.is_contiguous() and input.is_contiguous(
            memory_format=torch.channels_last
        ):
            y = y.contiguous(memory_format=torch.channels_last)
        return y
    sizes = chunk_sizes(input.shape[0], ghost_batch_size, math.prod(input.shape[2:]))
    if strategy == "native":
        from lbconvert.nn import _gbn_native

        if _gbn_native.usable(input, weight):
            return _gbn_native.native_ghost_batch_norm(input, *args, sizes)
    chunks = input.split(sizes)
    if momentum is not None and track and num_batches_tracked is not None:
        # Same result as _bn_chunk per chunk, with one counter update instead of one per chunk.
        ys = [F.batch_norm(chunk, running_mean, running_var, weight, bias, True, momentum, eps)
              for chunk in chunks]
        num_batches_tracked.add_(len(ys))
        return torch.cat(ys)
    return torch.cat([_bn_chunk(chunk, *args) for chunk in chunks])


class GhostBatchNorm(_BatchNorm):
    """Drop-in BatchNorm with per-ghost-batch statistics in training (Hoffer et al. 2017, Alg. 1).

    Works for (N, C), (N, C, L), (N, C, H, W) and (N, C, D, H, W) inputs. The default ghost
    size is the plan's (``lbconvert.plan.devices.SMALL_GHOST_BATCH``). ``strategy`` picks how
    the ghost batches are computed ("auto": :func:`pick_strategy`; "loop": one BatchNorm call
    per ghost batch; "native": BatchNorm's CPU kernels per ghost batch writing into one output;
    "vector": all ghost batches at once over a (N/ghost, ghost, C, ...) view;
    "fold": ghost batches folded into channels for one call; "triton": one fused kernel per
    pass on CUDA); a strategy that does not apply to an input falls back to "loop". Every
    strategy computes the same function, up to floating-point rounding.
    It is not part of the state dict.
    """

    def __init__(
        self,
        num_features: int,
        ghost_batch_size: int = SMALL_GHOST_BATCH,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        strategy: Strategy = "auto",
    ) -> None:
        if not isinstance(ghost_batch_size, int) or ghost_batch_size < 1:
            raise ValueError(f"Invalid ghost_batch_size: {ghost_batch_size!r} (need an int ≥ 1)")
        if strategy != "auto" and strategy not in STRATEGIES:
            raise ValueError(f"Invalid strategy: {strategy!r}")
        super().__init__(num_features, eps, momentum, affine, track_running_stats,
                         device=device, dtype=dtype)
        self.ghost_batch_size = ghost_batch_size
        self.strategy = strategy

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def extra_repr(self) -> str:
        return str(super().extra_repr()) + f", ghost_batch_size={self.ghost_batch_size}"

    def forward(self, input: Tensor) -> Tensor:
        """Ghost-batch statistics in training, running statistics in eval (exactly BatchNorm)."""
        return ghost_batch_norm(
            input,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            self.num_batches_tracked,
            self.training,
            self.track_running_stats,
            self.momentum,
            self.eps,
            self.ghost_batch_size,
            self.strategy,
        )

    @classmethod
    def from_batchnorm(cls, bn: _BatchNorm,
                       ghost_batch_size: int = SMALL_GHOST_BATCH) -> GhostBatchNorm:
        """A GhostBatchNorm sharing ``bn``'s parameters and buffers (the same tensors)."""
        ref = bn.weight if bn.weight is not None else bn.running_mean
        gbn = cls(
            bn.num_features, ghost_batch_size, eps=bn.eps, momentum=bn.momentum,
            affine=bn.affine, track_running_stats=bn.track_running_stats,
            device=None if ref is None else ref.device,
            dtype=None if ref is None else ref.dtype,
        )
        gbn.weight = bn.weight
        gbn.bias = bn.bias
        gbn.running_mean = bn.running_mean
        gbn.running_var = bn.running_var
        gbn.num_batches_tracked = bn.num_batches_tracked
        gbn.train(bn.training)
        return gbn


class LazyGhostBatchNorm(LazyModuleMixin, GhostBatchNorm):
    """GhostBatchNorm whose ``num_features`` is inferred from the first input.

    Surgery converts an uninitialized ``LazyBatchNorm{1,2,3}d`` into this (no input shape is
    known at rewrite time); on its first forward it materializes and becomes a GhostBatchNorm,
    as ``LazyBatchNorm2d`` becomes ``BatchNorm2d``.
    """

    cls_to_become = GhostBatchNorm

    def __init__(
        self,
        ghost_batch_size: int = SMALL_GHOST_BATCH,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        factory: dict[str, Any] = {"device": device, "dtype": dtype}
        # Placeholders first (affine/track False), then uninitialized tensors, as
        # torch.nn.modules.batchnorm._LazyNormBase does.
        super().__init__(0, ghost_batch_size, eps, momentum, False, False, **factory)
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = UninitializedParameter(**factory)
            self.bias = UninitializedParameter(**factory)
        if track_running_stats:
            self.running_mean = UninitializedBuffer(**factory)
            self.running_var = UninitializedBuffer(**factory)
            self.num_batches_tracked = torch.tensor(0, dtype=torch.long, device=device)

    def reset_parameters(self) -> None:
        if not self.has_uninitialized_params() and self.num_features != 0:
            super().reset_parameters()

    def initialize_parameters(self, input: Tensor) -> None:
        """Materialize parameters and buffers with ``input.shape[1]`` channels."""
        if self.has_uninitialized_params():
            self.num_features = input.shape[1]
            shape = (self.num_features,)
            if self.affine:
                self.weight.materialize(shape)
                self.bias.materialize(shape)
            if self.track_running_stats:
                self.running_mean.materialize(shape)
                self.running_var.materialize(shape)
            self.reset_parameters()
