"""The collapse guard: with real data a converted run that collapses is FAIL whatever its
distance says; a healthy one is not; with synthetic data every output says the verdict cannot
see a collapse (issue 23)."""

from __future__ import annotations

import copy
import io
import math
from pathlib import Path

import torch
import torch.nn as nn

from lbconvert.plan.plan import Plan
from lbconvert.rewrite.surgery import rewrite
from lbconvert.smoke.collapse import CHANCE_SIGMAS, judge
from lbconvert.smoke.diffusion import FAIL
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.run import run_smoke

DATA = f"{Path(__file__).with_name('collapse_data.py')}:clusters"


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 64),
                         nn.BatchNorm1d(64), nn.ReLU(), nn.Linear(64, 8))


def _smoke(lr_new: float, data: str = DATA):
    torch.manual_seed(0)
    model = _mlp()
    conv = rewrite(copy.deepcopy(model), 4).model
    plan = Plan(source_batch=4, target_batch=64, ratio=16.0, rule="sqrt", regime="adapt",
                epochs_factor=16.0, lr_old=0.05, lr_new=lr_new, lr_multiplier=lr_new / 0.05,
                warmup_epochs=0.0, warmup_start_factor=0.25, ghost_batch_size=4,
                optimizer_old="sgd", momentum=0.9, weight_decay=1e-4, epochs_old=10,
                epochs_new=160)
    # a fixed number of updates: no clock involved, the same numbers on every run
    opts = SmokeOptions(steps=60, device="cpu", progress=False, data=data)
    return run_smoke(model, conv, plan, opts, input_shape=(16,), num_classes=8)


def test_a_collapsing_converted_run_is_fail_with_the_reason():
    r = _smoke(3.0)  # 15× the √M rule's LR (0.2) on a small real dataset
    c = r.collapse
    assert c["judged"] and c["collapsed"] is True
    assert r.verdict.level == FAIL and r.verdict.reason.startswith("the converted run collapsed")
    conv, orig = c["points"]["converted"], c["points"]["original"]
    ends_higher = conv["end"]["train"]["loss"] > conv["start"]["train"]["loss"]
    floor = c["chance"] + CHANCE_SIGMAS * math.sqrt(c["chance"] * (1 - c["chance"])
                                                    / c["holdout"])
    at_chance = (conv["end"]["held_out"]["accuracy"] <= floor
                 < orig["end"]["held_out"]["accuracy"])
    assert ends_higher or at_chance
    assert ("above where it started" in c["line"]) == ends_higher
    assert ("at chance" in c["line"]) == at_chance


def test_a_healthy_converted_run_is_not_called_a_collapse():
    r = _smoke(0.2)  # the √M rule
    c = r.collapse
    assert c["judged"] and c["collapsed"] is False and c["line"].startswith("no collapse")
    assert r.verdict.level != FAIL
    conv = c["points"]["converted"]
    assert conv["end"]["train"]["loss"] < conv["start"]["train"]["loss"]
    assert conv["end"]["held_out"]["accuracy"] > c["chance_floor"]
    # the held-out slice was not trained on: 10% of the 2,048 samples
    assert c["holdout"] == 204


def test_synthetic_data_says_the_verdict_cannot_see_a_collapse_in_every_output():
    from rich.console import Console

    from lbconvert.cli.render_smoke import render_smoke
    from lbconvert.report.markdown import render_markdown

    r = _smoke(0.2, data="synthetic")
    assert r.collapse["judged"] is False and r.collapse["collapsed"] is None
    line = r.collapse["line"]
    assert "cannot see a collapse" in line
    assert r.to_dict()["collapse"]["line"] == line
    out = io.StringIO()
    render_smoke(r, Console(file=out, width=400))
    assert line in out.getvalue()
    doc = {"smoke": {"run": True, **r.to_dict()}}
    assert line in render_markdown(doc)


def _points(c0, c1, a_conv, a_orig):
    def ev(loss, acc):
        return {"train": {"loss": loss}, "held_out": {"accuracy": acc}}

    return {"converted": {"start": ev(c0, 0.1), "end": ev(c1, a_conv)},
            "original": {"start": ev(2.0, 0.1), "end": ev(1.0, a_orig)}}


def test_judge_rules():
    floor = 0.1 + 2 * math.sqrt(0.1 * 0.9 / 400)  # 0.13
    assert judge(_points(2.0, 2.1, 0.6, 0.6), 0.1, 400, 50)["collapsed"] is True  # loss rose
    assert judge(_points(2.0, 1.9, floor - 1e-3, 0.6), 0.1, 400, 50)["collapsed"] is True
    assert judge(_points(2.0, 1.9, floor + 1e-3, 0.6), 0.1, 400, 50)["collapsed"] is False
    # both at chance: too short to tell, said so rather than judged either way
    unsure = judge(_points(2.0, 1.9, 0.1, 0.1), 0.1, 400, 50)
    assert unsure["collapsed"] is None and "--smoke-time" in unsure["line"]
    assert judge(_points(2.0, float("nan"), 0.6, 0.6), None, 0, 50)["collapsed"] is True
