"""Ghost Batch Normalization (Hoffer, Hubara & Soudry 2017, "Train longer, generalize better",
Algorithm 1): in training, normalize each "ghost" batch of ``ghost_batch_size`` samples with its
own mean and variance; at inference use the running (population) statistics like BatchNorm.

``GhostBatchNorm`` subclasses ``torch.nn.modules.batchnorm._BatchNorm`` so that its parameters,
buffers and state-dict keys (``weight, bias, running_mean, running_var, num_batches_tracked``)
are exactly those of the BatchNorm it replaces: a converted checkpoint loads with
``strict=True`` into the user's unmodified model.

Semantics, all pinned by tests against ``nn.BatchNorm`` applied chunk by chunk:

* ghost batches are consecutive slices along dim 0 (``x.split(ghost_batch_size)``); a batch that
  is not a multiple of the ghost size ends with a smaller remainder chunk, normalized on its own
  as one more ghost batch; a batch ≤ the ghost size is plain BatchNorm;
* running statistics end up exactly as if BatchNorm had been called on each ghost batch in turn
  (``num_batches_tracked`` grows by the number of ghost batches; ``momentum=None`` is the
  cumulative average over ghost batches);
* a ghost batch BatchNorm itself cannot normalize (one value per channel: one sample, no
  spatial dims) raises BatchNorm's own error;
* in eval mode the module is ``F.batch_norm`` with the running statistics, exactly BatchNorm
  (and exports to ONNX as an ordinary ``BatchNormalization``);
* under DDP each process splits its own per-device batch: ghost batches never span devices
  and no statistics are communicated (SyncBatchNorm semantics are given up on purpose).

How the ghost batches are computed is a speed choice; every strategy computes the same
function up to floating-point rounding ("strategy"): "loop" calls BatchNorm once per ghost
batch; "native" (CPU) computes each ghost batch's statistics in one shifted pass and writes
into slices of one output with BatchNorm's CPU kernels (see ``_gbn_native``); "fold" folds the
ghost index into the channel axis for one call and applies the closed form of the sequential
running-stat updates; "triton" (CUDA) does a whole pass (all ghost batches, the running-stat
update, the weight/bias gradient sums) in one launch (see ``_gbn_triton``). "auto" picks per
device and input (:func:`pick_strategy`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedBuffer, UninitializedParameter

from lbconvert.nn.running_stats import update_running_stats

__all__ = ["GhostBatchNorm", "LazyGhostBatchNorm", "ghost_batch_norm", "pick_strategy",
           "STRATEGIES"]

Strategy = Literal["auto", "loop", "native", "fold", "triton"]
STRATEGIES: tuple[str, ...] = ("loop", "native", "fold", "triton")
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


def pick_strategy(x: Tensor, ghost: int) -> str:
    """The strategy ``auto`` uses for this input (rule from benchmarks/ghost_batchnorm.py).

    CPU: "native" (BatchNorm's CPU kernels as primitives per ghost batch, no concatenation
    copies). CUDA: only strategies in :data:`CUDA_VERIFIED` (docs/gpu-kernels.md): "loop"
    while torch.compile traces (Inductor fuses it); the one-launch Triton kernels only once
    they have passed the GPU test suite on hardware (not yet: they have run under Triton's
    interpreter only, which does not test memory ordering between programs, so
    ``strategy="triton"`` is opt-in); else "fold" for many ghost batches or half precision
    with few wide channels, where one BatchNorm call over ghost-folded channels beat the
    per-ghost loop, and "loop" otherwise.
    """
    if x.device.type != "cuda":
        return "native"
    if torch.compiler.is_compiling():
        # Plain BatchNorm calls per ghost batch: a graph Inductor fuses, no opaque kernel.
        return "loop"
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
    n = input.shape[0]
    if n <= ghost_batch_size:
        return _bn_chunk(input, running_mean, running_var, weight, bias,
                         num_batches_tracked, track, momentum, eps)
    n_ghosts = n // ghost_batch_size
    if strategy == "auto":
        strategy = pick_strategy(input, ghost_batch_size)
    if strategy == "triton":
        from lbconvert.nn import _gbn_triton

        # A last ghost batch with one value per channel gets BatchNorm's error via "loop".
        if _gbn_triton.available(input) and (n % ghost_batch_size or ghost_batch_size) * (
                input.numel() // (n * input.shape[1])) > 1:
            return _gbn_triton.ghost_batch_norm_cuda(
                input, weight, bias, running_mean if track else None,
                running_var if track else None, num_batches_tracked if track else None,
                ghost_batch_size, eps, momentum)
        strategy = "loop"
    if strategy == "fold" and ghost_batch_size >= 2:
        full = n_ghosts * ghost_batch_size
        y = _fold(input[:full], running_mean, running_var, weight, bias, num_batches_tracked,
                  track, momentum, eps, n_ghosts, ghost_batch_size)
        if full < n:
            rest = _bn_chunk(input[full:], running_mean, running_var, weight, bias,
                             num_batches_tracked, track, momentum, eps)
            y = torch.cat([y, rest])
        if input.dim() == 4 and not input.is_contiguous() and input.is_contiguous(
            memory_format=torch.channels_last
        ):
            y = y.contiguous(memory_format=torch.channels_last)
        return y
    if strategy == "native":
        from lbconvert.nn import _gbn_native

        if _gbn_native.usable(input, ghost_batch_size, weight):
            return _gbn_native.native_ghost_batch_norm(
                input, running_mean, running_var, weight, bias, num_batches_tracked, track,
                momentum, eps, ghost_batch_size)
        strategy = "loop"
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown GhostBatchNorm strategy {strategy!r}: use one of auto, "
                         + ", ".join(STRATEGIES))
    if momentum is not None and track and num_batches_tracked is not None:
        # Same result as _bn_chunk per chunk, with one counter update instead of one per chunk.
        ys = [F.batch_norm(chunk, running_mean, running_var, weight, bias, True, momentum, eps)
              for chunk in input.split(ghost_batch_size)]
        num_batches_tracked.add_(len(ys))
        return torch.cat(ys)
    return torch.cat([
        _bn_chunk(chunk, running_mean, running_var, weight, bias, num_batches_tracked,
                  track, momentum, eps)
        for chunk in input.split(ghost_batch_size)
    ])


class GhostBatchNorm(_BatchNorm):
    """Drop-in BatchNorm with per-ghost-batch statistics in training (Hoffer et al. 2017, Alg. 1).

    Works for (N, C), (N, C, L), (N, C, H, W) and (N, C, D, H, W) inputs. ``strategy`` picks how
    the ghost batches are computed ("auto": :func:`pick_strategy`; "loop": one BatchNorm call
    per ghost batch; "native": BatchNorm's CPU kernels per ghost batch writing into one output;
    "fold": ghost batches folded into channels for one call; "triton": one fused kernel per
    pass on CUDA); a strategy that does not apply to an input falls back to "loop". Every
    strategy computes the same function, up to floating-point rounding.
    It is not part of the state dict.
    """

    def __init__(
        self,
        num_features: int,
        ghost_batch_size: int = 128,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
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
        return super().extra_repr() + f", ghost_batch_size={self.ghost_batch_size}"

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
    def from_batchnorm(cls, bn: _BatchNorm, ghost_batch_size: int = 128) -> GhostBatchNorm:
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
        ghost_batch_size: int = 128,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        factory = {"device": device, "dtype": dtype}
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

    def initialize_parameters(self, input: Tensor) -> None:  # type: ignore[override]
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
