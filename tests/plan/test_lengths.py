"""Every schedule length in a config moves with the regime, or is named for a check."""

from __future__ import annotations

import pytest

from lbconvert.plan.lengths import schedule_lengths


def _by_key(lengths):
    return {ln.key: ln for ln in lengths}


def test_epochs_scale_by_f_and_steps_by_f_over_m():
    doc = {"epochs": 100, "sched": {"T_max": 100, "cooldown_epochs": 10, "eta_min": 0.0},
           "num_training_steps": 5000, "trainer": {"max_epochs": 100, "log_every_n_steps": 50},
           "save_steps": 500, "start_epoch": 3}
    # adapt with M = 32: f = 32; budget: f = 1.
    for f, m in ((32.0, 32.0), (1.0, 32.0), (2.0, 8.0)):
        got = _by_key(schedule_lengths(doc, handled={"epochs"}, epochs_factor=f, ratio=m,
                                       epochs_old=100.0))
        assert set(got) == {"sched.T_max", "sched.cooldown_epochs", "num_training_steps",
                            "trainer.max_epochs"}  # no logging/saving interval, no position
        assert got["sched.T_max"].new == pytest.approx(100 * f)
        assert got["sched.cooldown_epochs"].new == pytest.approx(10 * f)
        assert got["trainer.max_epochs"].new == pytest.approx(100 * f)
        # steps per epoch shrink M-fold: 5000 steps of the old run = 5000·f/M new updates
        assert got["num_training_steps"].new == pytest.approx(5000 * f / m)
        assert got["num_training_steps"].unit == "steps"


def test_scheduler_counts_are_steps_when_stepped_per_update_or_too_long():
    per_update = {"lr_scheduler": {"interval": "step", "T_max": 80}}
    ln = schedule_lengths(per_update, handled=set(), epochs_factor=4, ratio=4, epochs_old=90)[0]
    assert ln.unit == "steps" and ln.new == pytest.approx(80)
    long = {"T_max": 39000}  # more scheduler steps than 90 epochs: per-update counting
    ln = schedule_lengths(long, handled=set(), epochs_factor=4, ratio=4, epochs_old=90)[0]
    assert ln.unit == "steps" and ln.new == pytest.approx(39000)


def test_unknown_unit_and_second_warmup_are_not_rescaled():
    doc = {"T_0": 5000, "ema": {"warmup_steps": 2000}}
    got = _by_key(schedule_lengths(doc, handled=set(), epochs_factor=8, ratio=8,
                                   epochs_old=None, warmup_epochs=40))
    assert got["T_0"].new is None and "epochs or steps" in got["T_0"].reason
    assert got["ema.warmup_steps"].new is None and "40 epochs" in got["ema.warmup_steps"].reason
