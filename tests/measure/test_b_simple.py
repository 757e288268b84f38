"""B_simple against its definition, computed directly from per-sample gradients.

McCandlish et al. 2018, eq. 2.8: B_simple = tr(Σ)/|G|², with G the mean and Σ the covariance of
the per-example gradients. Here both come from a tiny model's per-sample gradients over a
64-sample data set (one autograd.grad per sample, no batching), independently of the
estimator, which only ever sees squared norms of batch gradients. Batches are drawn uniformly
with replacement, so E|G_B|² = |G|² + tr(Σ)/B holds exactly with the population Σ (1/N).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lbconvert.measure.noise_probe import probe_noise_scale
from lbconvert.measure.noise_scale import NoiseScale, unbiased_estimates

N = 64


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1)).double()
    x = torch.randn(N, 4, dtype=torch.float64)
    y = 1.5 + x[:, :1] + 0.3 * torch.randn(N, 1, dtype=torch.float64)
    return model, x, y


def _direct(model, x, y):
    """(B_simple, |G|², tr Σ) from per-sample gradients."""
    params = list(model.parameters())
    per_sample = []
    for i in range(N):
        loss = nn.functional.mse_loss(model(x[i:i + 1]), y[i:i + 1])
        per_sample.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
    g = torch.stack(per_sample)
    mean = g.mean(0)
    g2 = float(mean @ mean)
    trace = float(((g - mean) ** 2).sum(1).mean())
    return trace / g2, g2, trace


def test_estimator_recovers_b_simple_from_the_expected_squared_norms():
    # Fed the exact expectations E|G_B|² at two batch sizes, the unbiased estimators
    # (appendix A.1) give |G|², tr Σ and their ratio exactly.
    model, x, y = _problem()
    b_simple, g2, trace = _direct(model, x, y)
    assert 0.5 < b_simple < 2  # a problem where B_small = 2 and B_big = 16 resolve it
    small, big = g2 + trace / 2, g2 + trace / 16
    assert unbiased_estimates(small, 2, big, 16) == pytest.approx((g2, trace), rel=1e-12)
    est = NoiseScale(ema=0.9)
    for _ in range(3):
        est.update(torch.tensor(small, dtype=torch.float64), 2, big, 16)
    assert est.b_simple == pytest.approx(b_simple, rel=1e-12)
    assert (est.g2, est.trace) == (pytest.approx(g2, rel=1e-12), pytest.approx(trace, rel=1e-12))
    assert est.stderr < 1e-6 * b_simple  # identical steps: no spread (up to rounding)


def test_probe_converges_to_the_direct_b_simple_within_its_stated_error():
    model, x, y = _problem()
    b_simple, _, _ = _direct(model, x, y)
    gen = torch.Generator().manual_seed(0)

    def small_grad():
        idx = torch.randint(0, N, (2,), generator=gen)
        nn.functional.mse_loss(model(x[idx]), y[idx]).backward()

    out = probe_noise_scale(model, small_grad, b_small=2, k=8, rounds=40)
    assert (out["b_small"], out["b_big"], out["passes"]) == (2, 16, 320)
    assert 0 < out["stderr"] < 0.1 * b_simple
    assert abs(out["b_simple"] - b_simple) <= 3 * out["stderr"]
    assert out["b_simple"] == pytest.approx(b_simple, rel=0.1)
