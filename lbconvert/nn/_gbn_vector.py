"""GhostBatchNorm's "vector" strategy: the statistics of all ghost batches at once over a
(N/ghost, ghost, C, *S) view, one normalization pass, and an explicit backward, in plain torch
ops (so that Inductor can fuse it and a compiled graph has the same nodes whatever N/ghost).

Per ghost batch g and channel c, with n values x_i (Hoffer et al. 2017, Algorithm 1; the
backward is Ioffe & Szegedy 2015, Algorithm 1's, per ghost batch):

* two-pass statistics, numerically stable when |mean| ≫ std: mean = Σx/n, then the centred
  values xc = x - mean are kept and var = Σxc²/n (biased, for normalization);
* y = xc·s + b with s = w/sqrt(var + eps);
* dx = s·(dy - Σdy/n - xc·Σ(dy·xc)/(n·(var + eps))); dw = Σ_g Σ(dy·xc)/sqrt(var+eps),
  db = Σ_g Σdy.

The full ghost batches are one (G, ghost, C, *S) view; the last ghost batch (a merged or own
remainder, lbconvert.nn.ghost_chunks) is a second view of one ghost batch. Half precision
inputs are computed in float32, as BatchNorm keeps float32 statistics.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def _segments(n: int, full: int, size: int, tail: int) -> list[tuple[int, int, int]]:
    """(start, ghost batches, samples each) of the two views."""
    segs = [(0, full, size)] if full else []
    if tail:
        segs.append((full * size, 1, tail))
    return segs


def _cat(parts: list[Tensor]) -> Tensor:
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _values(x: Tensor, samples: int) -> int:
    """Values per channel in a ghost batch of ``samples`` samples."""
    return samples * int(math.prod(x.shape[2:]))


def _work_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


class VectorGhostBatchNorm(torch.autograd.Function):
    """Train-mode ghost batch norm of ``x`` over ``full`` ghost batches of ``size`` samples and
    one of ``tail``; returns the output, then per view the ghost batches' means and biased
    variances (``(k, C)`` each, not differentiable) for the running-statistics update.

    Every op over the (k, C) statistics counts: at ghost 4 on (N, C) inputs they are a quarter
    of the input, so the forward does four of them and the backward six
    (docs/ghost-batchnorm-speed.md).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float,
                full: int, size: int, tail: int) -> tuple[Tensor, ...]:
        wd = _work_dtype(x)
        c = x.shape[1]
        pshape = (c,) + (1,) * (x.dim() - 2)
        w = None if weight is None else weight.to(wd).view(pshape)
        b = None if bias is None else bias.to(wd).view(pshape)
        y = torch.empty_like(x)
        xc = torch.empty_like(x, dtype=wd)
        means, variances, invstds, scales = [], [], [], []
        segs = _segments(x.shape[0], full, size, tail)
        for start, k, s in segs:
            stop = start + k * s
            xs = x[start:stop].unflatten(0, (k, s))
            red = (1,) + tuple(range(3, xs.dim()))
            n = xs.numel() // (k * c)
            mean = xs.sum(red, keepdim=True, dtype=wd).mul_(1.0 / n)
            xcs = torch.sub(xs, mean, out=xc[start:stop].unflatten(0, (k, s)))
            ys = y[start:stop].unflatten(0, (k, s))
            # xc² goes through the output's buffer (overwritten just below): no temporary.
            # (linalg.vector_norm over non-adjacent dims measured 10x slower than mul + sum.)
            sq = torch.mul(xcs, xcs, out=ys) if ys.dtype == wd else xcs * xcs
            var = sq.sum(red, keepdim=True).mul_(1.0 / n)
            invstd = var.add(eps).rsqrt_()
            scale = invstd if w is None else invstd * w
            if b is None:
                torch.mul(xcs, scale, out=ys)
            else:
                torch.addcmul(b, xcs, scale, out=ys)
            means.append(mean.view(k, c))
            variances.append(var.view(k, c))
            invstds.append(invstd)
            scales.append(scale)
        ctx.save_for_backward(xc, weight, *invstds, *scales)
        ctx.segs = segs
        ctx.mark_non_differentiable(*means, *variances)
        return (y, *means, *variances)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad_out: Tensor, *_grad_stats: Tensor) -> tuple[Tensor | None, ...]:
        xc, weight, *rest = ctx.saved_tensors
        nseg = len(ctx.segs)
        invstds, scales = rest[:nseg], rest[nseg:]
        wd = xc.dtype
        c = xc.shape[1]
        dx = torch.empty_like(xc, dtype=grad_out.dtype)
        gw: Tensor | None = None
        gb: Tensor | None = None
        for (start, k, s), invstd, scale in zip(ctx.segs, invstds, scales):
            stop = start + k * s
            dy = grad_out[start:stop].unflatten(0, (k, s))
            xcs = xc[start:stop].unflatten(0, (k, s))
            dxs = dx[start:stop].unflatten(0, (k, s))
            red = (1,) + tuple(range(3, dy.dim()))
            n = xcs.numel() // (k * c)
            sdy = dy.sum(red, keepdim=True, dtype=wd)
            # dy·xc through dx's buffer when the dtypes allow (overwritten just below).
            prod = torch.mul(dy, xcs, out=dxs) if dxs.dtype == wd == dy.dtype else dy * xcs
            sdyx = prod.sum(red, keepdim=True).mul_(invstd)  # Σ dy·x̂
            # dx = s·dy + xc·(-s·invstd·Σ(dy·x̂)/n) - s·Σdy/n, two fused passes.
            neg = scale * (-1.0 / n)
            coef = (sdyx * invstd).mul_(neg)
            shift = sdy * neg
            torch.addcmul(shift, xcs, coef, out=dxs).addcmul_(dy, scale)
            if weight is not None:
                dims = (0,) + red
                part_w, part_b = sdyx.sum(dims), sdy.sum(dims)
                gw = part_w if gw is None else gw.add_(part_w)
                gb = part_b if gb is None else gb.add_(part_b)
        if weight is None or gw is None or gb is None:
            return dx, None, None, None, None, None, None
        return (dx, gw.reshape(c).to(weight.dtype), gb.reshape(c).to(weight.dtype), None, None,
                None, None)


def vector_ghost_batch_norm(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                            weight: Tensor | None, bias: Tensor | None,
                            num_batches_tracked: Tensor | None, track: bool,
                            momentum: float | None, eps: float, full: int, size: int,
                            tail: int) -> Tensor:
    """Train-mode ghost batch norm through :class:`VectorGhostBatchNorm`; the running
    statistics and ``num_batches_tracked`` end as after BatchNorm on each ghost batch in turn."""
    from lbconvert.nn import running_stats

    y, *stats = VectorGhostBatchNorm.apply(x, weight, bias, eps, full, size, tail)
    if track and running_mean is not None and running_var is not None:
        segs = _segments(x.shape[0], full, size, tail)
        half = len(segs)
        if torch.compiler.is_compiling():
            # One (2, G, C) tensor, updated by the closed form in fixed torch ops.
            unbiased = [v * (_values(x, s) / max(_values(x, s) - 1, 1))
                        for v, (_, _, s) in zip(stats[half:], segs)]
            packed = torch.stack([_cat(stats[:half]), _cat(unbiased)])
            running_stats.update_running_stats(running_mean, running_var, num_batches_tracked,
                                               packed, momentum)
        else:
            parts = [(m, v, _values(x, s)) for m, v, (_, _, s) in
                     zip(stats[:half], stats[half:], segs)]
            running_stats.update_running_stats_parts(running_mean, running_var,
                                                     num_batches_tracked, parts, momentum)
    return y
