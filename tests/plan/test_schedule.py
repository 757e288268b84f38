"""LR schedules as a function of progress, and the torch schedulers built from them."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.errors import LbconvertError
from lbconvert.optim.scheduler import make_scheduler
from lbconvert.plan.plan import Plan
from lbconvert.plan.schedule import lr_curve, lr_multiplier


def make_plan(**kw) -> Plan:
    base = dict(
        source_batch=128, target_batch=1024, ratio=8.0, rule="sqrt", regime="adapt",
        epochs_factor=8.0, lr_old=0.1, lr_new=0.1 * math.sqrt(8), lr_multiplier=math.sqrt(8),
        epochs_old=10.0, epochs_new=20.0, warmup_epochs=2.0, warmup_start_factor=0.1,
        schedule="multistep", milestones_old=[5.0, 8.0], milestones_new=[10.0, 16.0],
        gamma=0.1,
    )
    base.update(kw)
    return Plan(**base)


def test_pure_modules_do_not_import_torch():
    code = ("import sys, lbconvert.plan.schedule, lbconvert.optim.factory, "
            "lbconvert.optim.param_groups;"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_multistep_with_warmup_values():
    p = make_plan()
    assert lr_multiplier(p, 0.0) == pytest.approx(0.1)
    assert lr_multiplier(p, 1.0) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_multiplier(p, 2.0) == 1.0
    assert lr_multiplier(p, 9.99) == 1.0
    assert lr_multiplier(p, 10.0) == pytest.approx(0.1)
    assert lr_multiplier(p, 16.0) == pytest.approx(0.01)
    assert lr_multiplier(p, 30.0) == pytest.approx(0.01)
    # the old run: milestones_old, no warmup
    assert lr_multiplier(p, 0.0, "old") == 1.0
    assert lr_multiplier(p, 5.0, "old") == pytest.approx(0.1)


def test_decay_shapes_end_values():
    cos = make_plan(schedule="cosine", min_lr=0.01)
    assert lr_multiplier(cos, 2.0) == pytest.approx(1.0)
    assert lr_multiplier(cos, 11.0) == pytest.approx(0.5 * (1 + 0.01 / cos.lr_new))
    assert lr_multiplier(cos, 20.0) * cos.lr_new == pytest.approx(0.01)
    poly = make_plan(schedule="poly", poly_power=None)
    assert lr_multiplier(poly, 11.0) == pytest.approx(0.25)  # (1 - 0.5)^2, You et al. power 2
    assert lr_multiplier(poly, 20.0) == 0.0
    lin = make_plan(schedule="linear")
    assert lr_multiplier(lin, 6.5) == pytest.approx(0.75)
    exp = make_plan(schedule="exponential", gamma=0.9)
    # the old run's total decay 0.9^10 is reached at the end of the new run
    assert lr_multiplier(exp, 20.0) == pytest.approx(0.9 ** 10)
    assert lr_multiplier(exp, 10.0, "old") == pytest.approx(0.9 ** 10)
    const = make_plan(schedule="constant")
    assert lr_multiplier(const, 15.0) == 1.0


def test_curve_and_errors():
    p = make_plan()
    curve = lr_curve(p, "new", points=50)
    assert curve[0] == (0.0, pytest.approx(p.lr_new * 0.1))
    assert curve[-1][0] == 20.0 and curve[-1][1] == pytest.approx(p.lr_new * 0.01)
    assert (10.0, pytest.approx(p.lr_new * 0.1)) in curve  # milestone sampled exactly
    old = lr_curve(p, "old", points=11)
    assert old[-1] == (10.0, pytest.approx(0.001))
    with pytest.raises(LbconvertError, match="epochs"):
        lr_multiplier(make_plan(schedule="cosine", epochs_new=None), 1.0)
    with pytest.raises(LbconvertError, match="schedule"):
        lr_multiplier(make_plan(schedule="bogus"), 1.0)


def _trajectory(plan, steps_per_epoch, interval, n):
    w = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([w], lr=plan.lr_new)
    sched = make_scheduler(opt, plan, steps_per_epoch, interval=interval)
    lrs = []
    for _ in range(n):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return sched, lrs


PLANS = {
    "multistep": make_plan(),
    "step_no_warmup": make_plan(schedule="step", warmup_epochs=0.0),
    "cosine": make_plan(schedule="cosine", min_lr=0.002),
    "poly": make_plan(schedule="poly", poly_power=2.0),
    "poly_floor": make_plan(schedule="poly", min_lr=0.01),
    "linear": make_plan(schedule="linear", warmup_start_factor=0.0),
    "exponential": make_plan(schedule="exponential", gamma=0.8),
    "constant": make_plan(schedule="constant"),
}


@pytest.mark.parametrize("name", sorted(PLANS))
@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_scheduler_matches_multiplier(name, interval):
    plan = PLANS[name]
    spe = 4
    units = spe if interval == "step" else 1
    n = int(plan.epochs_new * units) + 1
    sched, lrs = _trajectory(plan, spe, interval, n)
    assert sched.lbconvert_interval == interval
    for k, lr in enumerate(lrs):
        expect = plan.lr_new * lr_multiplier(plan, k / units)
        assert lr == pytest.approx(expect, rel=1e-6, abs=1e-9), k


@settings(max_examples=15, deadline=None)
@given(spe=st.integers(1, 7), warm=st.integers(0, 3), m1=st.integers(4, 9),
       gamma=st.sampled_from([0.1, 0.5]))
def test_property_multistep_any_steps_per_epoch(spe, warm, m1, gamma):
    plan = make_plan(warmup_epochs=float(warm), milestones_new=[float(m1), float(m1 + 5)],
                     gamma=gamma, epochs_new=16.0)
    _, lrs = _trajectory(plan, spe, "step", 16 * spe + 1)
    for k, lr in enumerate(lrs):
        assert lr == pytest.approx(plan.lr_new * lr_multiplier(plan, k / spe), rel=1e-6), k


def test_bad_interval():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(LbconvertError):
        make_scheduler(opt, make_plan(), 10, interval="batch")
    with pytest.raises(LbconvertError):
        make_scheduler(opt, make_plan(), 0)
