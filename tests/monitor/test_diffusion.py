"""DiffusionMonitor: distances and trust ratios against an independent computation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from lbconvert.errors import LbconvertError
from lbconvert.measure.distance import param_groups_for_distance
from lbconvert.monitor.diffusion import DISTANCE_TAG, DiffusionMonitor
from lbconvert.optim.lars import LARS


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 5))


def _train(model, opt, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(8, 3, 8, 8, generator=gen)
        y = torch.randint(0, 5, (8,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _reference(model, w0):
    """Distances with numpy in float64, grouped as the smoke test groups."""
    cur = {n: p.detach().double().numpy() for n, p in model.named_parameters()}
    per = {}
    for g, names in param_groups_for_distance(model).items():
        per[g] = math.sqrt(sum(float(((cur[n] - w0[n]) ** 2).sum()) for n in names))
    return math.sqrt(sum(v * v for v in per.values())), per


def test_distance_total_and_groups_match_numpy():
    model = _model()
    w0 = {n: p.detach().double().numpy().copy() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    mon = DiffusionMonitor(model, opt, every_n_steps=1)
    assert mon.measure()[DISTANCE_TAG] == 0.0
    _train(model, opt, 5)
    vals = mon.measure()
    total, per = _reference(model, w0)
    assert vals[DISTANCE_TAG] == pytest.approx(total, rel=1e-6)
    assert total > 0
    for g, v in per.items():
        assert vals[f"{DISTANCE_TAG}/{g}"] == pytest.approx(v, rel=1e-6, abs=1e-9)
    # groups are the smoke test's: "0", "1", "4" (conv, bn, linear)
    assert set(per) == {"0", "1", "4"}
    assert not any("trust" in k for k in vals)  # not LARS


def test_every_n_steps_and_log_to_writer_and_callable():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = DiffusionMonitor(model, opt, every_n_steps=3)
    got = []
    for step in range(1, 8):
        _train(model, opt, 1, seed=step)
        mon.log_to(lambda tag, v, s: got.append((tag, s)), step)
    assert sorted({s for _, s in got}) == [3, 6]

    class Writer:
        def __init__(self):
            self.rows = []

        def add_scalar(self, tag, value, step):
            self.rows.append((tag, value, step))

    w = Writer()
    assert mon.log_to(w, 7) is None and not w.rows
    vals = mon.log_to(w, 9)
    assert {t for t, _, _ in w.rows} == set(vals) and all(s == 9 for _, _, s in w.rows)
    with pytest.raises(LbconvertError, match="SummaryWriter"):
        mon.log_to(object(), 12)


def test_cpu_bf16_w0_states_cost_and_stays_close():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    exact = DiffusionMonitor(model, opt)
    low = DiffusionMonitor(model, opt, w0_device="cpu", w0_dtype=torch.bfloat16)
    n = sum(p.numel() for p in model.parameters())
    assert exact.memory_bytes == 4 * n and low.memory_bytes == 2 * n
    assert "bfloat16 on cpu" in low.describe() and "MiB" in low.describe()
    _train(model, opt, 5)
    a, b = exact.measure()[DISTANCE_TAG], low.measure()[DISTANCE_TAG]
    # bf16 rounding of w_0: |error| ≤ 2^-8 ‖w_0‖ (relative error per element)
    w0_norm = math.sqrt(sum(float(p.detach().pow(2).sum()) for p in model.parameters()))
    assert abs(a - b) <= 2 ** -8 * w0_norm + 1e-6
    assert a > 10 * 2 ** -8 * w0_norm  # the bound is informative here


def test_lars_trust_ratios_match_formula():
    model = _model()
    opt = LARS(model, lr=0.5, momentum=0.9, weight_decay=1e-3, trust_coefficient=0.01)
    mon = DiffusionMonitor(model, opt)
    _train(model, opt, 2)
    vals = mon.measure()
    ratios = []
    for group in opt.param_groups:
        if not group["lars_adapt"]:
            continue
        for p in group["params"]:
            w = float(np.linalg.norm(p.detach().double().numpy()))
            g = float(np.linalg.norm(p.grad.double().numpy()))
            ratios.append(0.01 * w / (g + 1e-3 * w))
    assert len(ratios) == 2  # conv and linear weights; biases and BN excluded
    assert vals["lbconvert/trust_ratio_median"] == pytest.approx(np.median(ratios), rel=1e-5)
    assert vals["lbconvert/trust_ratio_min"] == pytest.approx(min(ratios), rel=1e-5)
    assert vals["lbconvert/trust_ratio_max"] == pytest.approx(max(ratios), rel=1e-5)
    opt.zero_grad(set_to_none=True)
    assert "lbconvert/trust_ratio_median" not in mon.measure()  # no gradients: no ratios


def test_unwraps_wrappers_and_refuses_bad_input():
    model = _model()
    wrapped = nn.DataParallel(model)
    mon = DiffusionMonitor(wrapped, every_n_steps=2)
    assert mon.params[0] is next(model.parameters())
    with pytest.raises(LbconvertError, match="every_n_steps"):
        DiffusionMonitor(model, every_n_steps=0)
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(LbconvertError, match="no trainable"):
        DiffusionMonitor(frozen)


def test_resumed_monitor_logs_under_its_own_tag_that_the_audit_does_not_read():
    from lbconvert.audit.history import canonical_name
    from lbconvert.monitor.diffusion import RESUMED_DISTANCE_TAG

    model = _model()
    mon = DiffusionMonitor(model, every_n_steps=1, resumed_at=40)
    _train(model, torch.optim.SGD(model.parameters(), lr=0.1), 2)
    vals = mon.measure()
    assert DISTANCE_TAG not in vals and vals[RESUMED_DISTANCE_TAG] > 0
    assert all(not k.startswith(DISTANCE_TAG + "/") for k in vals)
    assert "resumed at update 40" in mon.describe()
    assert all(canonical_name(k) is None for k in vals)  # never read as ‖w_t − w_0‖
    fresh = DiffusionMonitor(model, every_n_steps=1)
    assert DISTANCE_TAG in fresh.measure()
