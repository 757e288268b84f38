"""GhostBatchNorm's "native" strategy: BatchNorm's own ATen kernels, one call per ghost batch,
each writing straight into its slice of one preallocated output (and of one input gradient).

The chunk loop ("loop") pays for ``torch.cat`` in forward and the split's gradient copy in
backward: two extra passes over a memory-bound tensor. Here forward and backward each write
every element once, as BatchNorm does (measured on CPU, fwd+bwd over nn.BatchNorm2d: loop
0.99-1.79x, native 0.75-1.26x; benchmarks/ghost_batchnorm.py). On CUDA the ``out=`` kernels
measured slower than the loop (H100: 1.0-14x), so ``auto`` uses this on CPU only.
"""

from __future__ import annotations

import torch
from torch import Tensor

_aten = torch.ops.aten


def usable(x: Tensor, ghost: int, weight: Tensor | None) -> bool:
    """True when the per-slice ``out=`` kernels apply: float32/float64 with parameters of the
    same dtype (half precision keeps float32 statistics, which the ``out=`` kernels handle
    differently per device), a dense layout, no autocast, not under torch.compile, and no
    ghost batch with a single value per channel (BatchNorm's own error for that comes from
    the loop strategy)."""
    if torch.compiler.is_compiling() or torch.is_autocast_enabled(x.device.type):
        return False
    if x.dtype not in (torch.float32, torch.float64) or (
            weight is not None and weight.dtype != x.dtype):
        return False
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(
        memory_format=torch.channels_last))
    last = x.shape[0] % ghost or ghost
    return dense and last * x[0, 0].numel() > 1


class NativeGhostBatchNorm(torch.autograd.Function):
    """Hoffer et al. 2017, Algorithm 1, over ghost batches of ``ghost`` samples along dim 0.

    ``factors`` holds each ghost batch's running-stat update factor (momentum, or 1/t for the
    cumulative average), so running statistics follow BatchNorm called on each ghost batch in
    turn.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, factors, eps, ghost):
        out = torch.empty_like(x)
        saved = []
        for i, start in enumerate(range(0, x.shape[0], ghost)):
            mean, invstd = x.new_empty(x.shape[1]), x.new_empty(x.shape[1])
            _aten.native_batch_norm.out(
                x[start:start + ghost], weight, bias, running_mean, running_var, True,
                factors[i], eps, out=out[start:start + ghost], save_mean=mean,
                save_invstd=invstd)
            saved += [mean, invstd]
        ctx.save_for_backward(x, weight, running_mean, running_var, *saved)
        ctx.eps, ctx.ghost = eps, ghost
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight, running_mean, running_var, *saved = ctx.saved_tensors
        affine = weight is not None
        grad_in = torch.empty_like(x)
        grad_w = grad_b = None
        grad_out = grad_out.contiguous(memory_format=_format(x))
        for i, start in enumerate(range(0, x.shape[0], ctx.ghost)):
            sl = slice(start, start + ctx.ghost)
            mean, invstd = saved[2 * i], saved[2 * i + 1]
            if affine:
                gw, gb = torch.empty_like(weight), torch.empty_like(weight)
                _aten.native_batch_norm_backward.out(
                    grad_out[sl], x[sl], weight, running_mean, running_var, mean, invstd, True,
                    ctx.eps, [True, True, True], out0=grad_in[sl], out1=gw, out2=gb)
                grad_w = gw if grad_w is None else grad_w.add_(gw)
                grad_b = gb if grad_b is None else grad_b.add_(gb)
            else:
                gx, _, _ = _aten.native_batch_norm_backward(
                    grad_out[sl], x[sl], None, running_mean, running_var, mean, invstd, True,
                    ctx.eps, [True, False, False])
                grad_in[sl].copy_(gx)
        return grad_in, grad_w, grad_b, None, None, None, None, None


def _format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def native_ghost_batch_norm(x, running_mean, running_var, weight, bias, num_batches_tracked,
                            track, momentum, eps, ghost):
    """Train-mode ghost batch norm through :class:`NativeGhostBatchNorm`; updates
    ``num_batches_tracked`` once per ghost batch, as BatchNorm per ghost batch would."""
    n_chunks = -(-x.shape[0] // ghost)
    if not track:
        running_mean = running_var = None
        factors = [0.0] * n_chunks
    elif momentum is None:
        # Cumulative average: BatchNorm uses 1/t after incrementing t, once per call.
        t0 = int(num_batches_tracked) if num_batches_tracked is not None else 0
        factors = [1.0 / (t0 + i + 1) for i in range(n_chunks)]
    else:
        factors = [momentum] * n_chunks
    if track and num_batches_tracked is not None:
        num_batches_tracked.add_(n_chunks)
    return NativeGhostBatchNorm.apply(x, weight, bias, running_mean, running_var, factors,
                                      eps, ghost)
