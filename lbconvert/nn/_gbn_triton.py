"""Triton kernels for Ghost BatchNorm on CUDA: one program per (ghost batch, channel) group.

What BatchNorm's own kernels do per channel, done per ghost group, one launch per pass:

* forward: the group's mean and biased variance, the normalized output, and (when running
  statistics are tracked) the running-statistics update of Hoffer et al. 2017, Alg. 1 as if
  BatchNorm had been called on each ghost batch in turn;
* backward: Σdy and Σdy·x̂ per group and dx = w·rstd·(dy − mean(dy) − x̂·mean(dy·x̂))
  (Ioffe & Szegedy 2015, backward of Alg. 1), and the weight/bias gradients summed over the
  ghost groups of each channel.

A group small enough for one register tile (≤ 8192 values, e.g. 32 samples at 14×14) is read
from memory once per pass (two-pass variance in registers); a larger one is streamed twice,
the variance from sums shifted by the group's first value (no catastrophic cancellation when
|mean| ≫ std). The remainder batch that does not fill a ghost batch is one more, smaller group.

Cross-group reductions (the sequential running-stat update, Σ over ghosts of the weight and
bias gradients) are done in the same launch by the last program to finish each channel: each
program writes its group's numbers, then takes a ticket from a per-channel counter; the one
holding the last ticket reads all groups of its channel in ghost order (deterministic) and
resets the counter to zero. The counters are one int32 buffer per device, always zero between
launches; launches of these kernels on several CUDA streams at once are not supported.

Only contiguous NCHW-like inputs are handled; ``available(x)`` says when this path applies.
"""

from __future__ import annotations

import torch
from torch import Tensor

try:  # triton ships with CUDA builds of torch; the CPU path never needs it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - environment without triton
    triton = None

#: Largest group (ghost samples × spatial positions) held in registers in one tile.
FIT_MAX = 8192
#: Tile length when a group is streamed in several tiles.
STREAM_BLOCK = 2048


def available(x: Tensor) -> bool:
    """True when the Triton kernels can run on ``x``: CUDA, contiguous, float32/16/bf16, at
    least 2 dimensions and fewer than 2**31 elements (32-bit offsets)."""
    return (triton is not None and x.is_cuda and x.dim() >= 2 and x.is_contiguous()
            and x.numel() < 2**31 and x.dtype in (torch.float32, torch.float16, torch.bfloat16))


if triton is not None:

    @triton.jit
    def _group(pid, N, C, GS, S: tl.constexpr):
        # Program pid = ghost * C + channel: its channel, first element, value count (the last
        # ghost batch may be short) and the sample stride.
        gi = pid // C
        c = pid - gi * C
        row0 = gi * GS
        cs = C * S
        return c, row0 * cs + c * S, tl.minimum(GS, N - row0) * S, cs

    @triton.jit
    def _fwd_kernel(X, Y, W, B, STATS, RM, RV, NBT, CNT, N, C, GS, G, eps, momentum,
                    S: tl.constexpr, BLOCK: tl.constexpr, FITS: tl.constexpr,
                    HAS_W: tl.constexpr, HAS_B: tl.constexpr, TRACK: tl.constexpr,
                    CUMULATIVE: tl.constexpr):
        pid = tl.program_id(0)
        c, base, n_el, cs = _group(pid, N, C, GS, S)
        nf = n_el.to(tl.float32)
        k = tl.arange(0, BLOCK)
        if FITS:
            mask = k < n_el
            off = base + (k // S) * cs + (k % S)
            x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
            mean = tl.sum(x, axis=0) / nf
            d = tl.where(mask, x - mean, 0.0)
            var = tl.sum(d * d, axis=0) / nf
        else:
            shift0 = tl.load(X + base).to(tl.float32)
            a1 = tl.zeros([BLOCK], dtype=tl.float32)
            a2 = tl.zeros([BLOCK], dtype=tl.float32)
            for start in range(0, n_el, BLOCK):
                kk = start + k
                mask = kk < n_el
                off = base + (kk // S) * cs + kk % S
                d = tl.load(X + off, mask=mask, other=0.0).to(tl.float32) - shift0
                d = tl.where(mask, d, 0.0)
                a1 += d
                a2 += d * d
            m1 = tl.sum(a1, axis=0) / nf
            mean = shift0 + m1
            var = tl.maximum(tl.sum(a2, axis=0) / nf - m1 * m1, 0.0)
        rstd = 1.0 / tl.sqrt(var + eps)
        # (x - mean) first, as BatchNorm does: x*scale + shift cancels when |mean| >> std.
        scale = rstd
        if HAS_W:
            scale = scale * tl.load(W + c).to(tl.float32)
        shift = 0.0
        if HAS_B:
            shift = tl.load(B + c).to(tl.float32)
        if FITS:
            tl.store(Y + off, ((x - mean) * scale + shift).to(Y.dtype.element_ty), mask=mask)
        else:
            for start in range(0, n_el, BLOCK):
                kk = start + k
                mask = kk < n_el
                off = base + (kk // S) * cs + kk % S
                x = tl.load(X + off, mask=mask, other=0.0).to(tl.float32)
                tl.store(Y + off, ((x - mean) * scale + shift).to(Y.dtype.element_ty),
                         mask=mask)
        gc = G * C
        tl.store(STATS + pid, mean)
        tl.store(STATS + gc + pid, rstd)
        if TRACK:
            # Unbiased variance for the running estimate, as BatchNorm stores it.
            tl.store(STATS + 2 * gc + pid, var * nf / (nf - 1.0))
            tl.debug_barrier()
            ticket = tl.atomic_add(CNT + c, 1)
            if ticket == G - 1:
                rm = tl.load(RM + c).to(tl.float32)
                rv = tl.load(RV + c).to(tl.float32)
                if CUMULATIVE:
                    t0 = tl.load(NBT).to(tl.float32)
                f = momentum
                for i in range(0, G):
                    if CUMULATIVE:
                        f = 1.0 / (t0 + i + 1.0)
                    mi = tl.load(STATS + i * C + c, volatile=True)
                    vi = tl.load(STATS + 2 * gc + i * C + c, volatile=True)
                    rm = f * mi + (1.0 - f) * rm
                    rv = f * vi + (1.0 - f) * rv
                tl.store(RM + c, rm.to(RM.dtype.element_ty))
                tl.store(RV + c, rv.to(RV.dtype.element_ty))
                tl.atomic_xchg(CNT + c, 0)

    @triton.jit
    def _bwd_kernel(X, DY, DX, W, STATS, PART, DW, DB, CNT, N, C, GS, G,
                    S: tl.constexpr, BLOCK: tl.constexpr, FITS: tl.constexpr,
                    HAS_W: tl.constexpr):
        pid = tl.program_id(0)
        c, base, n_el, cs = _group(pid, N, C, GS, S)
        nf = n_el.to(tl.float32)
        gc = G * C
        mean = tl.load(STATS + pid)
        rstd = tl.load(STATS + gc + pid)
        k = tl.arange(0, BLOCK)
        if FITS:
            mask = k < n_el
            off = base + (k // S) * cs + (k % S)
            xhat = (tl.load(X + off, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
            dy = tl.load(DY + off, mask=mask, other=0.0).to(tl.float32)
            s_dy = tl.sum(dy, axis=0)
            s_dyx = tl.sum(tl.where(mask, dy * xhat, 0.0), axis=0)
        else:
            a1 = tl.zeros([BLOCK], dtype=tl.float32)
            a2 = tl.zeros([BLOCK], dtype=tl.float32)
            for start in range(0, n_el, BLOCK):
                kk = start + k
                mask = kk < n_el
                off = base + (kk // S) * cs + kk % S
                xh = (tl.load(X + off, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
                d = tl.load(DY + off, mask=mask, other=0.0).to(tl.float32)
                a1 += d
                a2 += tl.where(mask, d * xh, 0.0)
            s_dy = tl.sum(a1, axis=0)
            s_dyx = tl.sum(a2, axis=0)
        scale = rstd
        if HAS_W:
            scale = scale * tl.load(W + c).to(tl.float32)
        m_dy = s_dy / nf
        m_dyx = s_dyx / nf
        if FITS:
            dx = scale * (dy - m_dy - xhat * m_dyx)
            tl.store(DX + off, dx.to(DX.dtype.element_ty), mask=mask)
        else:
            for start in range(0, n_el, BLOCK):
                kk = start + k
                mask = kk < n_el
                off = base + (kk // S) * cs + kk % S
                xh = (tl.load(X + off, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
                d = tl.load(DY + off, mask=mask, other=0.0).to(tl.float32)
                dx = scale * (d - m_dy - xh * m_dyx)
                tl.store(DX + off, dx.to(DX.dtype.element_ty), mask=mask)
        if HAS_W:
            tl.store(PART + pid, s_dyx)
            tl.store(PART + gc + pid, s_dy)
            tl.debug_barrier()
            ticket = tl.atomic_add(CNT + c, 1)
            if ticket == G - 1:
                dw = s_dyx * 0.0
                db = s_dy * 0.0
                for i in range(0, G):
                    dw += tl.load(PART + i * C + c, volatile=True)
                    db += tl.load(PART + gc + i * C + c, volatile=True)
                tl.store(DW + c, dw.to(DW.dtype.element_ty))
                tl.store(DB + c, db.to(DB.dtype.element_ty))
                tl.atomic_xchg(CNT + c, 0)


_COUNTERS: dict[torch.device, Tensor] = {}


def _counters(device: torch.device, c: int) -> Tensor:
    """The device's zeroed per-channel ticket counters (grown when a layer is wider)."""
    buf = _COUNTERS.get(device)
    if buf is None or buf.numel() < c:
        buf = torch.zeros(max(c, 4096), dtype=torch.int32, device=device)
        _COUNTERS[device] = buf
    return buf


def _config(group: int) -> tuple[bool, int, int]:
    """(fits in one tile, tile length, warps) for groups of ``group`` values."""
    if group <= FIT_MAX:
        block = max(128, triton.next_power_of_2(group))
        return True, block, max(4, min(16, block // 512))
    return False, STREAM_BLOCK, 8


class _GhostBNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, nbt, ghost, eps, momentum):
        n, c = x.shape[0], x.shape[1]
        s = x.numel() // (n * c)
        g = -(-n // ghost)
        track = running_mean is not None
        y = torch.empty_like(x)
        stats = torch.empty(3 * g * c, device=x.device, dtype=torch.float32)
        cnt = _counters(x.device, c)
        fits, block, warps = _config(ghost * s)
        _fwd_kernel[(g * c,)](
            x, y, x if weight is None else weight, x if bias is None else bias, stats,
            running_mean if track else stats, running_var if track else stats,
            nbt if nbt is not None else cnt, cnt, n, c, ghost, g, eps,
            0.0 if momentum is None else momentum, S=s, BLOCK=block, FITS=fits,
            HAS_W=weight is not None, HAS_B=bias is not None, TRACK=track,
            CUMULATIVE=momentum is None, num_warps=warps)
        ctx.save_for_backward(x, weight, stats)
        ctx.meta = (g, ghost, s, bias.dtype if bias is not None else None)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, weight, stats = ctx.saved_tensors
        g, ghost, s, bias_dtype = ctx.meta
        n, c = x.shape[0], x.shape[1]
        dy = dy.contiguous()
        dx = torch.empty_like(x)
        affine = weight is not None
        part = dw = db = stats
        if affine:
            part = torch.empty(2 * g * c, device=x.device, dtype=torch.float32)
            dw = torch.empty_like(weight)
            db = torch.empty(c, device=x.device, dtype=bias_dtype or weight.dtype)
        fits, block, warps = _config(ghost * s)
        _bwd_kernel[(g * c,)](
            x, dy, dx, x if weight is None else weight, stats, part, dw, db,
            _counters(x.device, c), n, c, ghost, g, S=s, BLOCK=block, FITS=fits,
            HAS_W=affine, num_warps=warps)
        if not affine:
            return dx, None, None, None, None, None, None, None, None
        return (dx, dw if ctx.needs_input_grad[1] else None,
                db if ctx.needs_input_grad[2] else None, None, None, None, None, None, None)


def ghost_batch_norm_cuda(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                          running_mean: Tensor | None, running_var: Tensor | None,
                          num_batches_tracked: Tensor | None, ghost: int, eps: float,
                          momentum: float | None) -> Tensor:
    """Train-mode Ghost BatchNorm of ``x`` (all ghost batches, the remainder one included) in
    one forward and one backward launch; updates the running statistics (when given) and
    ``num_batches_tracked`` exactly as BatchNorm called on each ghost batch in turn would.

    The caller guarantees ``available(x)``, ``ghost`` < batch and that every group holds more
    than one value (BatchNorm's own error for that comes from the loop strategy).
    """
    if momentum is None and running_mean is not None and num_batches_tracked is None:
        raise ValueError("momentum=None needs num_batches_tracked (cumulative average)")
    y = _GhostBNFunction.apply(x, weight, bias, running_mean, running_var,
                               num_batches_tracked, ghost, eps, momentum)
    if num_batches_tracked is not None and running_mean is not None:
        num_batches_tracked.add_(-(-x.shape[0] // ghost))
    return y
