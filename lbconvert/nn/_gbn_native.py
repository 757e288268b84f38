"""GhostBatchNorm's "native" strategy (the CPU default): per ghost batch, BatchNorm's own ATen
CPU kernels used as vectorized, multi-threaded per-channel primitives, each writing straight
into its slice of one preallocated output, cache block by cache block.

Why not simply BatchNorm per ghost batch ("loop")? Three costs, measured on CPU
(benchmarks/ghost_batchnorm.py):

* ``torch.cat`` in forward and the split's gradient copy in backward are two extra passes
  over a memory-bound tensor (loop 1.3-2.3x BatchNorm on a 2-vCPU VM);
* BatchNorm's CPU forward computes its statistics with two passes accumulating in float64,
  compute-bound at about half the speed of a plain reduction (a 1.6 MB ghost batch: 540 us,
  of which 450 us are the statistics);

Here, per ghost batch of n values per channel (Hoffer et al. 2017, Alg. 1):

* forward: shift by K, the ghost batch's first value of each channel (so that |mean - K| is
  of the order of the standard deviation and the one-pass variance does not cancel), and get
  Σ(x-K) and Σ(x-K)² in one pass with float64 accumulation from BatchNorm's backward
  reduction kernel (its grad_bias and grad_weight outputs for dy = x - K, mean 0, invstd 1);
  mean = K + Σ(x-K)/n, var = Σ(x-K)²/n - (Σ(x-K)/n)². The shifted copy x-K lives in a
  scratch block that fits the cache, so x is read from memory once for the statistics;
  then y = (x - mean)·w/sqrt(var + eps) + b with BatchNorm's eval-mode kernel, fed the ghost
  batch's mean and biased variance (the formula BatchNorm's training forward applies after
  its statistics);
* backward (Ioffe & Szegedy 2015, Alg. 1 backward, with each ghost batch's saved mean and
  invstd): a ghost batch of up to 4 MB goes through BatchNorm's own backward kernel and is
  copied into its slice of the input gradient; a larger one would make that kernel allocate
  a temporary the allocator maps fresh (page faults on every call), so it takes Σdy and
  Σdy·x̂ from BatchNorm's backward reduction kernel and forms
  dx = a·(dy - Σdy/n) + b·(x - mean) in four vectorized passes over one cache block at a
  time, straight into the input gradient;
* running statistics: the sequential BatchNorm updates over the ghost batches in closed
  form (``running_stats.update_running_stats``).

On CUDA these primitives measured slower than the loop, so ``auto`` uses this on CPU only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_aten = torch.ops.aten

#: Bytes of one cache block (rows of whole samples) for the passes that reuse a temporary.
BLOCK_BYTES = 2 << 20
#: Largest ghost batch whose backward goes through BatchNorm's full kernel and a copy. Its
#: result is a temporary; glibc serves large ones with fresh mmaps, page-faulted on every call
#: (measured on a 2-vCPU VM: 1-2 us a fault, 12,545 faults for 51 MB).
TEMP_BYTES = 4 << 20


def usable(x: Tensor, weight: Tensor | None) -> bool:
    """True when the per-slice kernels apply: float32/float64 with parameters of the same
    dtype (half precision keeps float32 statistics, which these kernels handle differently
    per device), a dense layout, no autocast and not under torch.compile. (No ghost batch has
    a single value per channel: lbconvert.nn.ghost_chunks merges such a one into its
    neighbour.)"""
    if torch.compiler.is_compiling() or torch.is_autocast_enabled(x.device.type):
        return False
    if x.dtype not in (torch.float32, torch.float64) or (
            weight is not None and weight.dtype != x.dtype):
        return False
    return bool(x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(
        memory_format=torch.channels_last)))


def _rows(x: Tensor) -> int:
    """Samples per cache block."""
    return max(1, BLOCK_BYTES // max(1, int(x[0].numel()) * int(x.element_size())))


def _first_values(x: Tensor, start: int) -> Tensor:
    """Sample ``start``'s first value per channel, a (C,) view (the shift K)."""
    return x[(start, slice(None)) + (0,) * (x.dim() - 2)]


class NativeGhostBatchNorm(torch.autograd.Function):
    """Hoffer et al. 2017, Algorithm 1, over consecutive ghost batches of ``sizes`` samples.

    Forward returns the output and, per ghost batch, the mean and unbiased variance
    (``(2, G, C)``, not differentiable) for the running-statistics update.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float,
                sizes: list[int]) -> tuple[Tensor, Tensor]:
        c = x.shape[1]
        bshape = (c,) + (1,) * (x.dim() - 2)
        zero, one, none = x.new_zeros(c), x.new_ones(c), x.new_empty(0)
        rows = _rows(x)
        out = torch.empty_like(x)
        scratch = torch.empty_like(x[:min(rows, max(sizes))])
        means, variances, counts = [], [], []
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        for start, ghost in zip(starts, sizes):
            chunk = x[start:start + ghost]
            k = _first_values(x, start)
            sums = []
            for b0 in range(0, chunk.shape[0], rows):
                block = chunk[b0:b0 + rows]
                d = scratch[:block.shape[0]]
                torch.sub(block, k.view(bshape), out=d)
                # grad_weight = Σ d·(d - 0)·1 and grad_bias = Σ d, accumulated in float64.
                _, sq, s = _aten.native_batch_norm_backward(
                    d, d, None, None, None, zero, one, True, 0.0, [False, True, True])
                sums.append((s, sq))
            s, sq = sums[0] if len(sums) == 1 else (sum(p[0] for p in sums),
                                                     sum(p[1] for p in sums))
            n = chunk.numel() // c
            dm = s.div_(n)
            var = torch.addcmul(sq.div_(n), dm, dm, value=-1.0).clamp_min_(0.0)
            mean = dm.add_(k)
            _aten.native_batch_norm.out(chunk, weight, bias, mean, var, False, 0.0, eps,
                                        out=out[start:start + ghost], save_mean=none,
                                        save_invstd=none)
            means.append(mean)
            variances.append(var)
            counts.append(n)
        means, variances = torch.stack(means), torch.stack(variances)
        invstds = variances.add(eps).rsqrt_()
        n = torch.tensor(counts, dtype=x.dtype).unsqueeze(1)
        stats = torch.stack([means, variances * n / (n - 1).clamp_min_(1)])
        ctx.save_for_backward(x, weight, means, invstds)
        ctx.eps, ctx.sizes, ctx.starts = eps, sizes, starts
        ctx.mark_non_differentiable(stats)
        return out, stats

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor,
                 _grad_stats: Tensor) -> tuple[Tensor | None, ...]:
        x, weight, means, invstds = ctx.saved_tensors
        grad_in = torch.empty_like(x)
        grad_out = grad_out.contiguous(memory_format=_format(x))
        c = x.shape[1]
        bshape = (c,) + (1,) * (x.dim() - 2)
        rows = _rows(x)
        # Per ghost batch and channel (Ioffe & Szegedy 2015, Alg. 1 backward):
        # dx = a*(dy - Σdy/n) + b*(x - mean), a = w*invstd, b = -a*invstd*Σ(dy*xhat)/n.
        # (x - mean) is formed first, as BatchNorm's kernel does, so that |mean| >> std keeps
        # its precision; the four passes run over one cache block at a time.
        a_all = invstds if weight is None else invstds * weight
        sums_dy, sums_dyx = [], []
        for i, (start, ghost) in enumerate(zip(ctx.starts, ctx.sizes)):
            sl = slice(start, start + ghost)
            xc, gc, oc = x[sl], grad_out[sl], grad_in[sl]
            # BatchNorm's own backward kernel, whole for a ghost batch small enough for the
            # heap to recycle its result (no page faults; copied into place), else for the
            # two sums only.
            whole = xc.numel() * xc.element_size() <= TEMP_BYTES
            gx, sum_dyx, sum_dy = _aten.native_batch_norm_backward(
                gc, xc, weight, None, None, means[i], invstds[i], True, ctx.eps,
                [whole, True, True])
            sums_dy.append(sum_dy)
            sums_dyx.append(sum_dyx)
            if whole:
                oc.copy_(gx)
                continue
            n = xc.numel() // c
            a = a_all[i]
            b = (a * invstds[i] * sum_dyx).div_(-n).view(bshape)
            shift = (a * sum_dy).div_(n).view(bshape)
            mean, a = means[i].view(bshape), a.view(bshape)
            for b0 in range(0, xc.shape[0], rows):
                blk = slice(b0, b0 + rows)
                o = torch.sub(xc[blk], mean, out=oc[blk])
                o.mul_(b).addcmul_(gc[blk], a).sub_(shift)
        if weight is None:
            return grad_in, None, None, None, None
        return (grad_in, torch.stack(sums_dyx).sum(0), torch.stack(sums_dy).sum(0), None,
                None)


def _format(x: Tensor) -> torch.memory_format:
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def native_ghost_batch_norm(x: Tensor, running_mean: Tensor | None,
                            running_var: Tensor | None, weight: Tensor | None,
                            bias: Tensor | None, num_batches_tracked: Tensor | None,
                            track: bool, momentum: float | None, eps: float,
                            sizes: list[int]) -> Tensor:
    """Train-mode ghost batch norm through :class:`NativeGhostBatchNorm`; the running
    statistics and ``num_batches_tracked`` end as after BatchNorm on each ghost batch in turn."""
    from lbconvert.nn.running_stats import update_running_stats

    y, stats = NativeGhostBatchNorm.apply(x, weight, bias, eps, list(sizes))
    if track and running_mean is not None and running_var is not None:
        update_running_stats(running_mean, running_var, num_batches_tracked, stats, momentum)
    return y
