"""BatchNorm's running-statistics update for G ghost batches at once, in closed form.

Shared by the GhostBatchNorm strategies that compute every ghost batch's statistics first
("fold", CPU "native") and then must leave the buffers exactly as G sequential BatchNorm
calls would (Hoffer et al. 2017, Algorithm 1: inference uses the running statistics).
"""

from __future__ import annotations

import functools
from typing import cast

import torch
from torch import Tensor


def _ema_weights(n: int, momentum: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """m (1-m)^(n-1-i) for i = 0..n-1, computed in float64; torch ops rather than a Python
    list, so that a compiled graph holds the same nodes whatever the number of ghost batches."""
    powers = torch.arange(n - 1, -1, -1, dtype=torch.float64, device=device)
    return (torch.full_like(powers, 1.0 - momentum).pow_(powers) * momentum).to(dtype)


def update_running_stats(running_mean: Tensor, running_var: Tensor,
                         num_batches_tracked: Tensor | None, stats: Tensor,
                         momentum: float | None) -> None:
    """Apply G sequential BatchNorm buffer updates in closed form, as BatchNorm called on G
    ghost batches in turn would; stats: (2, G, C), each ghost's mean and unbiased variance.

    EMA with momentum m: r_G = (1-m)^G r_0 + Σ_i m (1-m)^(G-1-i) x_i.
    Cumulative average (momentum None, PyTorch's factor 1/t after incrementing t):
    r_G = (t0 r_0 + Σ_i x_i) / (t0 + G). ``num_batches_tracked`` grows by G.
    Elementwise products and sums only: autocast would run a matmul in bf16/fp16.
    """
    if momentum is None and num_batches_tracked is None:
        raise ValueError("momentum=None needs num_batches_tracked (cumulative average)")
    bufs = [running_mean, running_var]
    g = stats.shape[1]
    with torch.no_grad():
        stats = stats.to(running_mean.dtype)
        if momentum is None:  # num_batches_tracked is not None: checked above
            t = cast(Tensor, num_batches_tracked).to(running_mean.dtype)
            for buf, s in zip(bufs, stats.sum(1)):
                buf.mul_(t).add_(s).div_(t + g)
        else:
            weights = _ema_weights(g, momentum, stats.device, stats.dtype)
            update = (stats * weights[None, :, None]).sum(1)
            torch._foreach_mul_(bufs, (1.0 - momentum) ** g)
            torch._foreach_add_(bufs, list(update.unbind(0)))
        if num_batches_tracked is not None:
            num_batches_tracked.add_(g)


@functools.lru_cache(maxsize=64)
def _cached_ema_weights(n: int, momentum: float, device: torch.device,
                        dtype: torch.dtype) -> Tensor:
    # Read-only (an addmv operand): one tensor per ghost count, not a rebuild per step.
    return _ema_weights(n, momentum, device, dtype)


def update_running_stats_parts(running_mean: Tensor, running_var: Tensor,
                               num_batches_tracked: Tensor | None,
                               parts: list[tuple[Tensor, Tensor, int]],
                               momentum: float | None) -> None:
    """:func:`update_running_stats` for consecutive runs of ghost batches, each given as
    ``(means (k, C), biased variances (k, C), values per channel n)``, in eager mode.

    Same closed forms, with the sum over the k ghost batches of a run done by one ``addmv``
    per buffer (the unbiased correction n/(n-1) is its ``alpha``), so that the update costs a
    fixed handful of ops: at ghost 4 on (N, C) inputs the (k, C) statistics are a quarter of
    the input, and every extra op over them shows in the step time
    (docs/ghost-batchnorm-speed.md). Autocast is switched off around the update: the buffers
    stay in their own precision, as BatchNorm keeps them.
    """
    if momentum is None and num_batches_tracked is None:
        raise ValueError("momentum=None needs num_batches_tracked (cumulative average)")
    dev = running_mean.device
    if torch.is_autocast_enabled(dev.type):
        with torch.autocast(dev.type, enabled=False):
            update_running_stats_parts(running_mean, running_var, num_batches_tracked, parts,
                                       momentum)
        return
    with torch.no_grad():
        for means, variances, n in parts:
            k = means.shape[0]
            means = means.to(running_mean.dtype)
            variances = variances.to(running_mean.dtype)
            unbiased = n / max(n - 1, 1)
            if momentum is None:  # num_batches_tracked is not None: checked above
                t = cast(Tensor, num_batches_tracked).to(running_mean.dtype)
                ones = torch.ones(k, device=dev, dtype=running_mean.dtype)
                running_mean.mul_(t).addmv_(means.t(), ones).div_(t + k)
                running_var.mul_(t).addmv_(variances.t(), ones, alpha=unbiased).div_(t + k)
            else:
                weights = _cached_ema_weights(k, momentum, dev, running_mean.dtype)
                keep = (1.0 - momentum) ** k
                running_mean.addmv_(means.t(), weights, beta=keep)
                running_var.addmv_(variances.t(), weights, beta=keep, alpha=unbiased)
            if num_batches_tracked is not None:
                num_batches_tracked.add_(k)
