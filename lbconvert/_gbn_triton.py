"""Triton kernels for Ghost BatchNorm on CUDA: one program per (ghost batch, channel) group.

What BatchNorm's own kernel does per channel, done per ghost group in a single launch:
forward computes the group's mean and biased variance (two passes, as accurate as BatchNorm's
Welford) and normalizes; backward computes Σdy and Σdy·x̂ per group and the input gradient
dx = w·rstd·(dy − mean(dy) − x̂·mean(dy·x̂)) (Ioffe & Szegedy 2015, backward of Eq. in Alg. 1),
with per-group partial sums for the weight and bias gradients reduced over ghosts afterwards.

Only contiguous NCHW-like inputs are handled; ``available(x)`` says when this path applies.
"""

from __future__ import annotations

import torch  # noqa: TID253 - inherently torch; torch-free modules never import this one
from torch import Tensor  # noqa: TID253

try:  # triton ships with CUDA builds of torch; the CPU path never needs it
    import triton  # noqa: TID253 - inherently torch; torch-free modules never import this one
    import triton.language as tl  # noqa: TID253
except ImportError:  # pragma: no cover - environment without triton
    triton = None


def available(x: Tensor) -> bool:
    """True when the Triton kernels can run on ``x``."""
    return (triton is not None and x.is_cuda and x.is_contiguous() and x.dim() >= 2
            and x.numel() < 2**31 and x.dtype in (torch.float32, torch.float16, torch.bfloat16))


if triton is not None:

    @triton.jit
    def _fwd_kernel(X, Y, W, B, MEAN, VAR, RSTD, C, S, GS, eps, corr,
                    HAS_W: tl.constexpr, HAS_B: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        gi = pid // C
        c = pid % C
        n_el = GS * S
        base = gi * GS * C * S + c * S
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n_el, BLOCK):
            k = start + tl.arange(0, BLOCK)
            mask = k < n_el
            off = base + (k // S) * C * S + (k % S)
            acc += tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
        mean = tl.sum(acc, axis=0) / n_el
        acc2 = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n_el, BLOCK):
            k = start + tl.arange(0, BLOCK)
            mask = k < n_el
            off = base + (k // S) * C * S + (k % S)
            d = tl.load(X + off, mask=mask, other=0.0).to(tl.float32) - mean
            acc2 += tl.where(mask, d * d, 0.0)
        var = tl.sum(acc2, axis=0) / n_el
        rstd = 1.0 / tl.sqrt(var + eps)
        tl.store(MEAN + pid, mean)
        tl.store(VAR + pid, var * corr)
        tl.store(RSTD + pid, rstd)
        scale = rstd
        shift = -mean * rstd
        if HAS_W:
            w = tl.load(W + c).to(tl.float32)
            scale = scale * w
            shift = shift * w
        if HAS_B:
            shift = shift + tl.load(B + c).to(tl.float32)
        for start in range(0, n_el, BLOCK):
            k = start + tl.arange(0, BLOCK)
            mask = k < n_el
            off = base + (k // S) * C * S + (k % S)
            x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
            tl.store(Y + off, (x * scale + shift).to(Y.dtype.element_ty), mask=mask)

    @triton.jit
    def _bwd_kernel(X, DY, DX, W, MEAN, RSTD, DW, DB, C, S, GS,
                    HAS_W: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0)
        gi = pid // C
        c = pid % C
        n_el = GS * S
        base = gi * GS * C * S + c * S
        mean = tl.load(MEAN + pid)
        rstd = tl.load(RSTD + pid)
        sdy = tl.zeros([BLOCK], dtype=tl.float32)
        sdyx = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n_el, BLOCK):
            k = start + tl.arange(0, BLOCK)
            mask = k < n_el
            off = base + (k // S) * C * S + (k % S)
            x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + off, mask=mask, other=0.0).to(tl.float32)
            sdy += dy
            sdyx += tl.where(mask, dy * (x - mean) * rstd, 0.0)
        tot_dy = tl.sum(sdy, axis=0)
        tot_dyx = tl.sum(sdyx, axis=0)
        tl.store(DB + pid, tot_dy)
        tl.store(DW + pid, tot_dyx)
        m_dy = tot_dy / n_el
        m_dyx = tot_dyx / n_el
        scale = rstd
        if HAS_W:
            scale = scale * tl.load(W + c).to(tl.float32)
        for start in range(0, n_el, BLOCK):
            k = start + tl.arange(0, BLOCK)
            mask = k < n_el
            off = base + (k // S) * C * S + (k % S)
            x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
            dy = tl.load(DY + off, mask=mask, other=0.0).to(tl.float32)
            xhat = (x - mean) * rstd
            dx = scale * (dy - m_dy - xhat * m_dyx)
            tl.store(DX + off, dx.to(DX.dtype.element_ty), mask=mask)

    @triton.jit
    def _running_kernel(RM, RV, STATS, WEIGHTS, C, G, decay, BLOCK: tl.constexpr):
        # r_G = (1-m)^G r_0 + sum_i m (1-m)^(G-1-i) x_i, for mean and var (one launch).
        cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = cols < C
        acc_m = tl.zeros([BLOCK], dtype=tl.float32)
        acc_v = tl.zeros([BLOCK], dtype=tl.float32)
        for i in range(0, G):
            w = tl.load(WEIGHTS + i)
            acc_m += w * tl.load(STATS + i * C + cols, mask=mask, other=0.0)
            acc_v += w * tl.load(STATS + G * C + i * C + cols, mask=mask, other=0.0)
        rm = tl.load(RM + cols, mask=mask, other=0.0).to(tl.float32)
        rv = tl.load(RV + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(RM + cols, (decay * rm + acc_m).to(RM.dtype.element_ty), mask=mask)
        tl.store(RV + cols, (decay * rv + acc_v).to(RV.dtype.element_ty), mask=mask)


def _block(n_el: int) -> int:
    return max(128, min(4096, triton.next_power_of_2(n_el)))


class _GhostBNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, n_ghosts: int, ghost: int, eps: float):
        c = x.shape[1]
        s = x[0, 0].numel()
        groups = n_ghosts * c
        y = torch.empty_like(x)
        stats = torch.empty(3, groups, device=x.device, dtype=torch.float32)
        block = _block(ghost * s)
        n = ghost * s
        _fwd_kernel[(groups,)](
            x, y, weight if weight is not None else x, bias if bias is not None else x,
            stats[0], stats[1], stats[2], c, s, ghost, eps, n / max(n - 1, 1),
            HAS_W=weight is not None, HAS_B=bias is not None, BLOCK=block,
            num_warps=8 if block >= 2048 else 4)
        ctx.save_for_backward(x, weight, stats)
        ctx.shape = (n_ghosts, ghost, c, s)
        ctx.bias_dtype = bias.dtype if bias is not None else x.dtype
        ctx.mark_non_differentiable(stats)
        return y, stats

    @staticmethod
    def backward(ctx, dy, _dstats):
        x, weight, stats = ctx.saved_tensors
        n_ghosts, ghost, c, s = ctx.shape
        dy = dy.contiguous()
        dx = torch.empty_like(x)
        part = torch.empty(2, n_ghosts * c, device=x.device, dtype=torch.float32)
        block = _block(ghost * s)
        _bwd_kernel[(n_ghosts * c,)](
            x, dy, dx, weight if weight is not None else x, stats[0], stats[2], part[0], part[1],
            c, s, ghost, HAS_W=weight is not None, BLOCK=block,
            num_warps=8 if block >= 2048 else 4)
        sums = part.view(2, n_ghosts, c).sum(1)
        dw = sums[0].to(weight.dtype) if ctx.needs_input_grad[1] else None
        db = sums[1].to(ctx.bias_dtype) if ctx.needs_input_grad[2] else None
        return dx, dw, db, None, None, None


_WEIGHTS: dict[tuple, Tensor] = {}


def _ema_weights(n: int, momentum: float, device: torch.device) -> Tensor:
    key = (n, momentum, device)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = torch.tensor([momentum * (1.0 - momentum) ** (n - 1 - i)
                                      for i in range(n)], dtype=torch.float32, device=device)
    return _WEIGHTS[key]


def ghost_bn_full(x: Tensor, weight: Tensor | None, bias: Tensor | None, n_ghosts: int,
                  ghost: int, eps: float) -> tuple[Tensor, Tensor]:
    """Normalize ``n_ghosts`` full ghost batches of ``x``.

    Returns (y, stats) where stats[0] and stats[1] are the per-ghost mean and unbiased
    variance, each (n_ghosts * C,), ghost-major, for the running-statistics update.
    """
    y, stats = _GhostBNFunction.apply(x, weight, bias, n_ghosts, ghost, eps)
    return y, stats


def update_running(running_mean: Tensor, running_var: Tensor, stats: Tensor, n_ghosts: int,
                   momentum: float) -> bool:
    """Sequential-EMA update of both running buffers in one launch; False if not applicable."""
    c = running_mean.numel()
    if not (running_mean.is_contiguous() and running_var.is_contiguous()):
        return False
    block = min(1024, triton.next_power_of_2(c))
    _running_kernel[(triton.cdiv(c, block),)](
        running_mean, running_var, stats, _ema_weights(n_ghosts, momentum, stats.device), c,
        n_ghosts, (1.0 - momentum) ** n_ghosts, BLOCK=block)
    return True
