"""``--calibrate``'s search (lbconvert.smoke.calibrate) on synthetic diffusion curves: each
trial's curve is a known function of the LR multiplier, so the boundary it must find is known."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from lbconvert.smoke import calibrate as cal_mod
from lbconvert.smoke.diffusion import Arm, Mark
from lbconvert.smoke.fit import fit_log_slope, log_spaced_steps

STEPS = 400


def _arm(name: str, fn, diverged: bool = False) -> Arm:
    arm = Arm(name=name, description="", batch=8, micro_batch=8, accumulation=1, lr=0.1,
              optimizer="lars", steps=STEPS, diverged=diverged)
    for t in log_spaced_steps(STEPS):
        arm.marks.append(Mark(t, fn(t), {}, 1.0, 8 * t, 0.1))
    return arm


def _setup(updates=(None, None)):
    """A stand-in ArmSetup: ``build`` hands the multiplier to the patched ``run_arm``."""
    plan = SimpleNamespace(lr_new=0.8, lr_old=0.1, ratio=64.0, lr_multiplier=8.0,
                           epochs_factor=64.0, updates_old=updates[0], updates_new=updates[1],
                           steps_per_epoch_new=None, epochs_old=None)
    return SimpleNamespace(plan=plan, proxy=SimpleNamespace(warmup_steps=0), dist=None,
                           build=lambda name, mult: mult)


def _calibrate(monkeypatch, curve, **kw):
    def fake_run_arm(mult, steps, seed):
        return curve(mult)

    monkeypatch.setattr(cal_mod, "run_arm", fake_run_arm)
    original = _arm("original", lambda t: 1 + math.log(t))
    original.fit = fit_log_slope([m.t for m in original.marks],
                                 [m.distance for m in original.marks])
    # a budget that allows every trial (step_time tiny, budget large)
    return cal_mod.calibrate_lr(_setup(**kw), original, STEPS, 1e-6, 1e6, 0)


def test_keeps_the_plans_lr_when_it_already_passes(monkeypatch):
    cal = _calibrate(monkeypatch, lambda m: _arm("converted", lambda t: 1.5 * (1 + math.log(t))))
    assert cal.multiplier == 1.0 and len(cal.trials) == 1
    assert cal.trials[0]["class"] == "ok" and "keep it" in cal.notes[-1]
    assert cal.final_gap == pytest.approx(math.log(1.5))


def test_raises_a_short_lr_to_the_least_multiplier_that_reaches_the_original(monkeypatch):
    # distance ∝ √m / 2: the converted run reaches the original's distance at m = 4
    cal = _calibrate(monkeypatch, lambda m: _arm(
        "converted", lambda t: 0.5 * math.sqrt(m) * (1 + math.log(t))))
    assert cal.trials[0]["class"] == "low" and cal.trials[1]["multiplier"] == 8.0
    passing = [t["multiplier"] for t in cal.trials if t["class"] == "ok"]
    assert all(m >= 4 for m in passing) and all(
        t["multiplier"] < 4 for t in cal.trials if t["class"] == "low")
    assert cal.multiplier == min(passing) and 4 <= cal.multiplier <= 4 * 1.2
    assert cal.final_gap >= 0 and cal.lr == pytest.approx(0.8 * cal.multiplier)


def test_lowers_an_lr_past_the_slope_bound_to_the_largest_that_passes(monkeypatch):
    # slope ratio 12·m: above the bound (10) for m > 5/6
    cal = _calibrate(monkeypatch, lambda m: _arm(
        "converted", lambda t: 12 * m * (1 + math.log(t))))
    assert cal.trials[0]["class"] == "high" and cal.trials[1]["multiplier"] == 1 / 8
    assert cal.multiplier == max(t["multiplier"] for t in cal.trials if t["class"] == "ok")
    assert 5 / 6 / 1.2 <= cal.multiplier <= 5 / 6


def test_a_diverging_run_is_too_high(monkeypatch):
    cal = _calibrate(monkeypatch, lambda m: _arm(
        "converted", lambda t: 1.2 * (1 + math.log(t)), diverged=m > 0.5))
    assert cal.trials[0]["class"] == "high" and cal.trials[0]["final_gap"] == math.inf
    assert 0.5 / 1.2 <= cal.multiplier <= 0.5


def test_budget_plan_is_judged_where_it_ends(monkeypatch):
    # The plan's horizon: the original ends at 3200 updates, the converted run at 400 (same
    # epochs, M = 8). At 1× the converted run diffuses 1.2× faster per update but ends short.
    cal = _calibrate(monkeypatch, lambda m: _arm(
        "converted", lambda t: 1.2 * math.sqrt(m) * (1 + math.log(t))),
        updates=(3200, 400))
    first = cal.trials[0]
    expect = math.log(1.2 * (1 + math.log(400)) / (1 + math.log(3200)))
    assert first["final_gap"] == pytest.approx(expect, rel=1e-6) and first["class"] == "low"
    need = ((1 + math.log(3200)) / (1.2 * (1 + math.log(400)))) ** 2
    assert need <= cal.multiplier <= need * 1.2
