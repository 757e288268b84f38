"""Gradient noise scale (McCandlish et al. 2018) against a case with a known answer.

A linear "model" whose per-example loss is ``w · v_i`` with ``v_i = G + L z_i``, z ~ N(0, I):
its per-example gradient is exactly v_i, so the gradient mean is G, the covariance Σ = L Lᵀ
and the true noise scale B_simple = tr(Σ)/|G|² is known in closed form.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from lbconvert.errors import LbconvertError
from lbconvert.measure.noise_scale import NoiseScale, grad_sq_norm, unbiased_estimates

D = 6


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=D)
    g /= np.linalg.norm(g)  # |G|² = 1
    lmat = rng.normal(size=(D, D))
    lmat *= math.sqrt(24.0 / np.trace(lmat @ lmat.T))  # tr Σ = 24 → B_simple = 24
    return g, lmat


def test_estimators_are_unbiased_in_expectation():
    # E|G_B|² = |G|² + tr Σ / B exactly: plugging the expectations in recovers both.
    g2, tr = 0.7, 30.0
    est_g2, est_tr = unbiased_estimates(g2 + tr / 4, 4, g2 + tr / 64, 64)
    assert est_g2 == pytest.approx(g2) and est_tr == pytest.approx(tr)
    with pytest.raises(LbconvertError, match="B_small < B_big"):
        unbiased_estimates(1.0, 8, 1.0, 8)


def test_micro_batch_path_recovers_known_noise_scale_within_stated_error():
    g, lmat = _problem()
    truth = np.trace(lmat @ lmat.T) / float(g @ g)
    w = nn.Parameter(torch.zeros(D, dtype=torch.float64))
    gen = torch.Generator().manual_seed(3)
    G = torch.tensor(g)
    L = torch.tensor(lmat)
    micro, accum = 4, 8
    est = NoiseScale(ema=1.0)  # plain mean: the stated error is the mean's
    for _ in range(1500):
        w.grad = None
        for j in range(accum):
            v = G + torch.randn(micro, D, generator=gen, dtype=torch.float64) @ L.T
            loss = (w * v).sum(1).mean() / accum  # mean over the micro-batch, ÷ accumulation
            loss.backward()
            if j == 0:
                est.observe_small([w], micro, scale=accum)
        est.observe_big([w], micro * accum)
    assert est.count == 1500
    assert est.stderr < 0.25 * truth  # informative
    assert abs(est.b_simple - truth) < 3 * est.stderr, (est.b_simple, truth, est.stderr)
    vals = est.values()
    assert vals["lbconvert/noise_scale"] == est.b_simple


def test_stated_error_is_honest_over_many_runs():
    """Independent simulation: |G_B|² drawn from the Gaussian model; ~95% of runs land
    within 2 stated standard errors of the truth (EMA and plain mean)."""
    g, lmat = _problem(1)
    truth = np.trace(lmat @ lmat.T)
    rng = np.random.default_rng(7)
    for ema in (1.0, 0.99):
        hits, runs = 0, 200
        for _ in range(runs):
            est = NoiseScale(ema=ema)
            z_small = rng.normal(size=(400, D)) / math.sqrt(8)
            z_rest = rng.normal(size=(400, D)) / math.sqrt(56)
            small = g + z_small @ lmat.T
            big = g + (z_small * 8 / 64 + z_rest * 56 / 64) @ lmat.T  # includes the small batch
            for s, b in zip((small ** 2).sum(1), (big ** 2).sum(1)):
                est.update(float(s), 8, float(b), 64)
            hits += abs(est.b_simple - truth) < 2 * est.stderr
        assert 0.88 <= hits / runs <= 1.0, (ema, hits)


def test_grad_sq_norm_and_errors():
    lin = nn.Linear(3, 2)
    with pytest.raises(LbconvertError, match="no parameter has a gradient"):
        grad_sq_norm(lin)
    lin(torch.ones(1, 3)).sum().backward()
    ref = sum(float(p.grad.pow(2).sum()) for p in lin.parameters())
    assert float(grad_sq_norm(lin, scale=2.0)) == pytest.approx(4 * ref)
    with pytest.raises(LbconvertError, match="observe_small"):
        NoiseScale().observe_big(lin, 8)
    with pytest.raises(LbconvertError, match="ema"):
        NoiseScale(ema=0)
    assert math.isnan(NoiseScale().b_simple)
