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


def _work_dtype(x: Tensor) -> torch.dtype:
    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


class VectorGhostBatchNorm(torch.autograd.Function):
    """Train-mode ghost batch norm of ``x`` over ``full`` ghost batches of ``size`` samples and
    one of ``tail``; returns the output and, per ghost batch, the mean and unbiased variance
    (``(2, G, C)``, not differentiable) for the running-statistics update."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, full, size, tail):
        wd = _work_dtype(x)
        c = x.shape[1]
        pshape = (c,) + (1,) * (x.dim() - 2)
        y = torch.empty_like(x)
        xc = torch.empty_like(x, dtype=wd)
        means, invstds, unbiased = [], [], []
        for start, k, s in _segments(x.shape[0], full, size, tail):
            stop = start + k * s
            xs = x[start:stop].unflatten(0, (k, s))
            red = (1,) + tuple(range(3, xs.dim()))
            n = xs.numel() // (k * c)
            mean = xs.to(wd).mean(red, keepdim=True)
            xcs = xc[start:stop].unflatten(0, (k, s))
            torch.sub(xs, mean, out=xcs)
            ys = y[start:stop].unflatten(0, (k, s))
            # xc² goes through the output's buffer (overwritten just below): no temporary.
            # (linalg.vector_norm over non-adjacent dims measured 10x slower than mul + sum.)
            sq = torch.mul(xcs, xcs, out=ys) if ys.dtype == wd else xcs * xcs
            var = sq.sum(red, keepdim=True).div_(n)
            invstd = (var + eps).rsqrt_()
            scale = invstd if weight is None else invstd * weight.to(wd).view(pshape)
            if bias is None:
                torch.mul(xcs, scale, out=ys)
            else:
                torch.addcmul(bias.to(wd).view(pshape), xcs, scale, out=ys)
            means.append(mean.reshape(k, c))
            invstds.append(invstd.reshape(k, c))
            unbiased.append(var.reshape(k, c) * (n / max(n - 1, 1)))
        stats = torch.stack([_cat(means), _cat(unbiased)])
        ctx.save_for_backward(xc, weight, _cat(invstds))
        ctx.segs = _segments(x.shape[0], full, size, tail)
        ctx.mark_non_differentiable(stats)
        return y, stats

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, _grad_stats):
        xc, weight, invstds = ctx.saved_tensors
        wd = xc.dtype
        c = xc.shape[1]
        pshape = (c,) + (1,) * (xc.dim() - 2)
        dx = torch.empty_like(xc, dtype=grad_out.dtype)
        sum_dy, sum_dyx = [], []
        g0 = 0
        for start, k, s in ctx.segs:
            stop = start + k * s
            dy = grad_out[start:stop].unflatten(0, (k, s))
            xcs = xc[start:stop].unflatten(0, (k, s))
            red = (1,) + tuple(range(3, dy.dim()))
            n = xcs.numel() // (k * c)
            invstd = invstds[g0:g0 + k].view((k, 1) + pshape)
            g0 += k
            sdy = dy.sum(red, keepdim=True, dtype=wd)
            prod = dy * xcs
            sdyx = prod.sum(red, keepdim=True)
            scale = invstd if weight is None else invstd * weight.to(wd).view(pshape)
            # dx = s·dy + xc·(-s·invstd²·Σ(dy·xc)/n) - s·Σdy/n, two fused passes.
            coef = scale * invstd * invstd * sdyx / (-n)
            shift = scale * sdy / (-n)
            torch.addcmul(shift, xcs, coef, out=dx[start:stop].unflatten(0, (k, s))
                          ).addcmul_(dy, scale)
            sum_dy.append(sdy.reshape(k, c))
            sum_dyx.append((sdyx * invstd).reshape(k, c))
        if weight is None:
            return dx, None, None, None, None, None, None
        gw = _cat(sum_dyx).sum(0).to(weight.dtype)
        gb = _cat(sum_dy).sum(0).to(weight.dtype)
        return dx, gw, gb, None, None, None, None


def vector_ghost_batch_norm(x, running_mean, running_var, weight, bias, num_batches_tracked,
                            track, momentum, eps, full, size, tail):
    """Train-mode ghost batch norm through :class:`VectorGhostBatchNorm`; the running
    statistics and ``num_batches_tracked`` end as after BatchNorm on each ghost batch in turn."""
    from lbconvert.nn.running_stats import update_running_stats

    y, stats = VectorGhostBatchNorm.apply(x, weight, bias, eps, full, size, tail)
    if track:
        update_running_stats(running_mean, running_var, num_batches_tracked, stats, momentum)
    return y
