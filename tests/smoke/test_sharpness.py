"""Keskar et al. 2017 sharpness against a brute-force maximum over the ε-box's vertices."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from lbconvert.smoke.sharpness import keskar_sharpness


def _setup():
    torch.manual_seed(0)
    model = nn.Linear(3, 1, bias=False).double()
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 1, dtype=torch.float64)
    return model, x, y


def test_full_space_matches_best_vertex_of_the_box():
    # MSE of a linear model is convex in w, so its max over the box is at a vertex.
    model, x, y = _setup()
    eps = 0.05
    w = model.weight.detach().clone().reshape(-1)
    f0 = float(F.mse_loss(x @ w[:, None], y))
    best = max(
        float(
            F.mse_loss(x @ (w + eps * (w.abs() + 1) * torch.tensor(s, dtype=w.dtype))[:, None], y)
        )
        for s in itertools.product((-1.0, 1.0), repeat=3)
    )
    out = keskar_sharpness(model, x, y, F.mse_loss, epsilon=eps, steps=20)
    assert out["loss"] == pytest.approx(f0)
    assert out["max_loss"] == pytest.approx(best, rel=1e-9)
    assert out["sharpness"] == pytest.approx(100 * (best - f0) / (1 + f0), rel=1e-9)
    # The model itself is not perturbed.
    assert torch.equal(model.weight.detach().reshape(-1), w)


def test_sharpness_grows_with_epsilon_and_subspace_option_runs():
    model, x, y = _setup()
    small = keskar_sharpness(model, x, y, F.mse_loss, epsilon=1e-3)["sharpness"]
    large = keskar_sharpness(model, x, y, F.mse_loss, epsilon=1e-2)["sharpness"]
    assert 0 < small < large
    sub = keskar_sharpness(model, x, y, F.mse_loss, epsilon=1e-3, subspace_dim=2, seed=3)
    assert sub["subspace_dim"] == 2 and sub["sharpness"] >= 0


def test_invalid_settings():
    model, x, y = _setup()
    with pytest.raises(ValueError, match="sharpness settings"):
        keskar_sharpness(model, x, y, F.mse_loss, epsilon=0.0)
