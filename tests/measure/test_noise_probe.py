"""B_simple at fixed weights (lbconvert.measure.noise_probe): against a hand computation of the
two gradient norms and against a case with a known answer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from lbconvert.errors import LbconvertError
from lbconvert.measure.noise_probe import probe_noise_scale


def _hand_estimate(grads_by_round, b_small):
    """McCandlish et al. 2018 eqs. A.2–A.3 by hand, mean over rounds, delta-method error."""
    s_est, g_est = [], []
    for grads in grads_by_round:
        k = len(grads)
        big = k * b_small
        small_sq = float(np.mean([g @ g for g in grads]))
        mean = np.mean(grads, axis=0)
        big_sq = float(mean @ mean)
        g_est.append((big * big_sq - b_small * small_sq) / (big - b_small))
        s_est.append((small_sq - big_sq) / (1 / b_small - 1 / big))
    s, g = np.array(s_est), np.array(g_est)
    r = s.mean() / g.mean()
    n = len(s)
    var = (s.var() + r * r * g.var() - 2 * r * np.mean((s - s.mean()) * (g - g.mean())))
    return r, math.sqrt(var / g.mean() ** 2 / (n - 1)), g.mean(), s.mean()


def test_probe_matches_a_hand_computation_and_leaves_weights_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(96, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (96,))
    before = [p.detach().clone() for p in model.parameters()]
    b_small, k, rounds = 4, 6, 4
    cursor = iter(range(0, 96, b_small))

    def small_grad():
        i = next(cursor)
        nn.functional.cross_entropy(model(x[i:i + b_small]), y[i:i + b_small]).backward()

    out = probe_noise_scale(model, small_grad, b_small=b_small, k=k, rounds=rounds)

    # Independent: each batch's gradient with autograd.grad on a copy, flattened.
    ref = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    ref.load_state_dict(model.state_dict())
    grads = []
    for i in range(0, 96, b_small):
        loss = nn.functional.cross_entropy(ref(x[i:i + b_small]), y[i:i + b_small])
        gs = torch.autograd.grad(loss, list(ref.parameters()))
        grads.append(torch.cat([g.flatten() for g in gs]).numpy())
    by_round = [grads[r * k:(r + 1) * k] for r in range(rounds)]
    r, se, g2, tr = _hand_estimate(by_round, b_small)
    assert out["b_simple"] == pytest.approx(r, rel=1e-9)
    assert out["stderr"] == pytest.approx(se, rel=1e-6)
    assert out["g2"] == pytest.approx(g2, rel=1e-9) and out["trace"] == pytest.approx(tr, rel=1e-9)
    assert (out["b_small"], out["b_big"], out["rounds"], out["passes"]) == (4, 24, 4, 24)
    assert out["seconds"] >= 0
    for p, w in zip(model.parameters(), before):
        assert torch.equal(p, w) and p.grad is None


def test_probe_recovers_a_known_noise_scale():
    # Per-example loss w·v_i with v_i = G + L z_i: gradient mean G, covariance L Lᵀ, so
    # B_simple = tr(L Lᵀ)/|G|² = 24 exactly; batches of 4, 8 per round (B_big = 32).
    rng = np.random.default_rng(1)
    d = 6
    g = rng.normal(size=d)
    g /= np.linalg.norm(g)
    lmat = rng.normal(size=(d, d))
    lmat *= math.sqrt(24.0 / np.trace(lmat @ lmat.T))
    w = nn.Parameter(torch.zeros(d, dtype=torch.float64))
    gen = torch.Generator().manual_seed(2)
    g_t, l_t = torch.tensor(g), torch.tensor(lmat)

    def small_grad():
        v = g_t + torch.randn(4, d, generator=gen, dtype=torch.float64) @ l_t.T
        (v @ w).mean().backward()

    out = probe_noise_scale([w], small_grad, b_small=4, k=8, rounds=200)
    assert abs(out["b_simple"] - 24.0) < 4 * out["stderr"], out
    assert out["stderr"] < 6


def test_probe_says_when_the_noise_swamps_the_signal():
    w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)

    def small_grad():  # zero mean gradient: |G|² = 0, the estimate is ≤ 0 about half the time
        (torch.randn(2, 3, generator=gen, dtype=torch.float64) @ w).mean().backward()

    outs = [probe_noise_scale([w], small_grad, b_small=2, k=4, rounds=3) for _ in range(20)]
    unresolved = [o for o in outs if o["b_simple"] is None]
    assert unresolved and all(o["stderr"] is None for o in unresolved)


def test_probe_rejects_sizes_without_two_batch_sizes():
    w = nn.Parameter(torch.zeros(2))
    with pytest.raises(LbconvertError, match="k ≥ 2"):
        probe_noise_scale([w], lambda: None, b_small=4, k=1)
