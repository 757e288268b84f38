"""Gradient noise scale B_simple = tr(Σ) / |G|² (McCandlish et al. 2018, appendix A).

McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training": with
per-example gradients of mean G and covariance Σ, the gradient of a batch of B examples has
``E|G_B|² = |G|² + tr(Σ)/B``. From two batch sizes B_small < B_big measured at the same step
the unbiased estimators are (appendix A.1)

    |G|²  ≈ 𝒢 = (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
    tr Σ  ≈ 𝒮 = (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

and B_simple = tr(Σ)/|G|² (eq. 2.8) is estimated as the ratio of exponential moving averages of
𝒮 and 𝒢 (the ratio of averages, not the average of ratios: each estimate alone is very noisy).
The "critical batch" B_crit ≈ B_simple: batches well beyond it buy little per step.

:class:`NoiseScale` is the one estimator: the monitor feeds it while training runs (the first
micro-batch's gradient and the accumulated one, or a rank's gradient and the all-reduced one:
:mod:`lbconvert.monitor.noise_scale`), the smoke test at fixed weights
(:func:`lbconvert.measure.noise_probe.probe_noise_scale`).

Stated error: alongside the EMAs the estimator keeps EMA-weighted second moments of 𝒮 and 𝒢,
and ``stderr`` is the delta-method standard error of the ratio with the EMA's effective sample
size n_eff = (Σw)²/Σw² (``ema=1`` is a plain mean over all steps). It assumes the per-step
estimates are independent (true for fresh batches at a fixed w; while w moves, B_simple
itself drifts and the EMA follows it).

No host synchronisation per step: squared norms stay on the device until values are read.
Torch is imported inside functions.
"""

from __future__ import annotations

import math
from typing import Any

from lbconvert.errors import LbconvertError

TAGS = {"b_simple": "lbconvert/noise_scale", "stderr": "lbconvert/noise_scale_stderr",
        "g2": "lbconvert/grad_sq_norm_est", "trace": "lbconvert/grad_noise_trace_est"}


def unbiased_estimates(g_small_sq: float, b_small: float, g_big_sq: float,
                       b_big: float) -> tuple[float, float]:
    """``(𝒢, 𝒮)``: unbiased |G|² and tr Σ from squared gradient norms at two batch sizes
    (McCandlish et al. 2018, eqs. A.2–A.3)."""
    if not 0 < b_small < b_big:
        raise LbconvertError(f"noise scale: need 0 < B_small < B_big (got {b_small}, {b_big}):"
                             " measure the small and the large batch gradient of the same step")
    g2 = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small)
    trace = (g_small_sq - g_big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


def grad_sq_norm(params_or_model: Any, scale: float = 1.0) -> Any:
    """``scale² · Σ‖∇w‖²`` over parameters with a gradient, as a 0-d device tensor (no sync)."""
    import torch

    params = (params_or_model.parameters() if hasattr(params_or_model, "parameters")
              else params_or_model)
    grads = [p.grad.detach() for p in params if p.grad is not None]
    if not grads:
        raise LbconvertError("noise scale: no parameter has a gradient: call it after"
                             " backward() and before zero_grad()")
    by: dict[tuple[Any, Any], list[Any]] = {}
    for g in grads:
        by.setdefault((g.device, g.dtype), []).append(g)
    dev = grads[0].device
    total = torch.zeros((), device=dev, dtype=torch.float64)
    for (_, dtype), gs in by.items():
        acc = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        norms = torch.stack(torch._foreach_norm(gs, 2, dtype=acc))
        total = total + norms.double().pow(2).sum().to(dev)
    return total * (scale * scale)


class NoiseScale:
    """EMA estimator of B_simple = tr Σ / |G|² (McCandlish et al. 2018, appendix A).

    Args:
        ema: the EMA factor β of 𝒮 and 𝒢 (0 < β ≤ 1; 1 = plain mean over all steps).

    Feed it with :meth:`update` (numbers or 0-d tensors), or :meth:`observe_small` /
    :meth:`observe_big` on one device, or
    :func:`lbconvert.monitor.noise_scale.register_ddp_hook` under DDP. Read
    :attr:`b_simple`, :attr:`stderr`, :meth:`values` (these synchronise once).
    """

    def __init__(self, ema: float = 0.95):
        if not 0 < ema <= 1:
            raise LbconvertError(f"NoiseScale: ema={ema!r} must be in (0, 1]")
        self.beta = float(ema)
        self._count = 0
        self._w = self._w2 = 0.0
        self._s = self._g = self._ss = self._gg = self._sg = 0.0
        self._pending: list[tuple[Any, float, Any, float]] = []
        self._small: tuple[Any, float] | None = None

    # -- feeding ---------------------------------------------------------------------------
    def update(self, g_small_sq: Any, b_small: float, g_big_sq: Any, b_big: float) -> None:
        """Record one step's squared norms at B_small and B_big (tensors stay on the device)."""
        if not 0 < b_small < b_big:
            unbiased_estimates(0.0, b_small, 0.0, b_big)  # raises with the message
        self._pending.append((g_small_sq, float(b_small), g_big_sq, float(b_big)))
        if len(self._pending) >= 256:
            self._flush()

    def observe_small(self, params_or_model: Any, batch: float, scale: float = 1.0) -> None:
        """After the first micro-batch's ``backward()``: its gradient, times ``scale`` (the
        accumulation steps when the loss was divided by them), is the B_small gradient."""
        self._small = (grad_sq_norm(params_or_model, scale), float(batch))

    def observe_big(self, params_or_model: Any, batch: float) -> None:
        """Before ``optimizer.step()``: the accumulated gradient is the B_big gradient."""
        if self._small is None:
            raise LbconvertError("NoiseScale.observe_big without observe_small: call"
                                 " observe_small after the first micro-batch's backward()")
        small, b_small = self._small
        self._small = None
        self.update(small, b_small, grad_sq_norm(params_or_model), batch)

    def _flush(self) -> None:
        if not self._pending:
            return
        import torch

        pend, self._pending = self._pending, []
        smalls = [p[0] for p in pend]
        bigs = [p[2] for p in pend]
        if any(isinstance(x, torch.Tensor) for x in smalls + bigs):
            host = torch.stack([torch.as_tensor(x, dtype=torch.float64).cpu()
                                for x in smalls + bigs]).tolist()
        else:
            host = [float(x) for x in smalls + bigs]
        n = len(pend)
        b = self.beta
        for i, (_, bs, _, bb) in enumerate(pend):
            g2, tr = unbiased_estimates(host[i], bs, host[n + i], bb)
            self._w = b * self._w + 1.0
            self._w2 = b * b * self._w2 + 1.0
            self._s = b * self._s + tr
            self._g = b * self._g + g2
            self._ss = b * self._ss + tr * tr
            self._gg = b * self._gg + g2 * g2
            self._sg = b * self._sg + tr * g2
            self._count += 1

    # -- reading ---------------------------------------------------------------------------
    @property
    def count(self) -> int:
        """Steps recorded."""
        self._flush()
        return self._count

    @property
    def trace(self) -> float:
        """EMA of the tr Σ estimates 𝒮."""
        self._flush()
        return self._s / self._w if self._w else math.nan

    @property
    def g2(self) -> float:
        """EMA of the |G|² estimates 𝒢."""
        self._flush()
        return self._g / self._w if self._w else math.nan

    @property
    def b_simple(self) -> float:
        """EMA(𝒮) / EMA(𝒢); NaN before the first step or when EMA(𝒢) ≤ 0 (too noisy yet)."""
        g2, tr = self.g2, self.trace
        return tr / g2 if self._w and g2 > 0 else math.nan

    @property
    def stderr(self) -> float:
        """Delta-method standard error of :attr:`b_simple` with n_eff = (Σw)²/Σw²."""
        r = self.b_simple
        if not math.isfinite(r) or self._count < 3:
            return math.nan
        w = self._w
        ms, mg = self._s / w, self._g / w
        var_s = max(self._ss / w - ms * ms, 0.0)
        var_g = max(self._gg / w - mg * mg, 0.0)
        cov = self._sg / w - ms * mg
        n_eff = w * w / self._w2
        var_r = (var_s + r * r * var_g - 2 * r * cov) / (mg * mg) / max(n_eff - 1, 1.0)
        return math.sqrt(max(var_r, 0.0))

    def values(self) -> dict[str, float]:
        """``{tag: value}`` for loggers: B_simple, its standard error, 𝒢 and 𝒮."""
        return {TAGS["b_simple"]: self.b_simple, TAGS["stderr"]: self.stderr,
                TAGS["g2"]: self.g2, TAGS["trace"]: self.trace}
