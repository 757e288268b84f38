"""LB010: the run's ‖w − w0‖ curve against a monitored baseline's, by updates."""

from __future__ import annotations

import math

import pytest

from lbconvert.audit.analyze.findings import Baseline
from lbconvert.audit.history import RunHistory
from lbconvert.audit.pipeline import analyze


def _run(path, slope, drop, *, end=None, batch=256, intercept=0.0):
    """A monitored run: d = intercept + slope·ln t at t = 1..end, LR 0.1 then 0.01 at ``drop``."""
    h = RunHistory(path=path, format="test")
    end = end or 2 * drop
    t = 1
    while t <= end:
        h.add_scalar("lbconvert/weight_distance", t, intercept + slope * math.log(t))
        h.add_scalar("lr", t, 0.1 if t < drop else 0.01)
        t = t + max(1, t // 8)
    h.set("batch_size", batch, "test")
    return h.finalize()


def _lb010(history, baseline_history):
    base = Baseline(batch_size=baseline_history.batch_size, source="base",
                    history=baseline_history, updates=baseline_history.total_updates)
    audit = analyze(history, base)
    return [f for f in audit.findings if f.rule_id == "LB010"], audit.skipped


def test_short_run_is_found_with_numbers_from_an_independent_fit():
    base = _run("base", slope=0.5, drop=1000)
    run = _run("run", slope=0.3, drop=1000, batch=4096)
    found, _ = _lb010(run, base)
    assert len(found) == 1
    f = found[0]
    ev = f.evidence
    # known curves: distances at the drop are slope·ln(drop), so the ratio is 0.3/0.5
    run_at = value_at_ref(run, 1000)
    base_at = value_at_ref(base, 1000)
    assert ev["distance_ratio"] == pytest.approx(run_at / base_at, rel=1e-4)
    assert ev["distance_ratio"] == pytest.approx(0.6, rel=0.02)
    assert ev["slope_per_ln_t"] == pytest.approx(0.3, rel=1e-6)
    assert ev["baseline_slope_per_ln_t"] == pytest.approx(0.5, rel=1e-6)
    # at this slope the run reaches 0.5·ln(T) at t* = T^(5/3), T = the baseline's drop
    t_base = ev["baseline_horizon_update"]
    assert 1000 <= t_base < 1200  # the first logged step at or after 1000
    assert ev["updates_to_reach_baseline_distance"] == pytest.approx(t_base ** (0.5 / 0.3),
                                                                     rel=1e-3)
    assert "40% short" in f.message and "drop the LR later" in f.fix
    assert f.severity == "warning"


def value_at_ref(h, t):
    """Linear interpolation by hand (independent of lbconvert's trend.value_at)."""
    s = h.series["weight_distance"]
    for (t0, v0), (t1, v1) in zip(zip(s.steps, s.values), zip(s.steps[1:], s.values[1:])):
        if t0 <= t <= t1:
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
    raise AssertionError


def test_no_finding_when_the_run_travelled_as_far_or_when_unmonitored():
    base = _run("base", slope=0.5, drop=1000)
    assert _lb010(_run("run", slope=0.45, drop=1000), base)[0] == []
    bare = RunHistory(path="run", format="test")
    bare.add_scalar("lr", 1, 0.1)
    bare.finalize()
    found, skipped = _lb010(bare, base)
    assert found == [] and "weight distance" in skipped["LB010"]
    audit = analyze(_run("run", slope=0.3, drop=1000))
    assert "baseline" in audit.skipped["LB010"]


def test_slow_run_gets_the_lr_fix_not_an_absurd_extrapolation():
    base = _run("base", slope=0.5, drop=1000)
    found, _ = _lb010(_run("run", slope=0.05, drop=1000), base)
    assert "raise the LR" in found[0].fix


def test_end_to_end_with_summary_writer_and_the_monitor(tmp_path):
    """Two real runs logged by DiffusionMonitor.log_to into TensorBoard event files: the
    small LR run is short of the large LR baseline."""
    pytest.importorskip("tensorboard")
    import torch
    import torch.nn as nn
    from torch.utils.tensorboard import SummaryWriter

    from lbconvert.audit.read.detect import read_run
    from lbconvert.monitor.diffusion import DiffusionMonitor

    def train(out, lr):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        opt = torch.optim.SGD(model.parameters(), lr=lr)
        mon = DiffusionMonitor(model, opt, every_n_steps=5)
        gen = torch.Generator().manual_seed(1)
        with SummaryWriter(str(out)) as w:
            for step in range(1, 301):
                x = torch.randn(16, 8, generator=gen)
                y = (x[:, 0] > 0).long()
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
                w.add_scalar("lr", opt.param_groups[0]["lr"], step)
                mon.log_to(w, step)
                if step == 200:
                    opt.param_groups[0]["lr"] = lr / 10

    train(tmp_path / "base", 0.2)
    train(tmp_path / "run", 0.02)
    bh = read_run(tmp_path / "base")
    bh.set("batch_size", 16, "test")
    found, _ = _lb010(read_run(tmp_path / "run"), bh)
    assert len(found) == 1
    ev = found[0].evidence
    # the LR is logged lower from update 201 on
    assert ev["run_horizon_update"] == 201 and ev["baseline_horizon_update"] == 201
    assert ev["distance_ratio"] < 0.8
