"""make_optimizer / make_original_optimizer for Adam-family plans (issue 26)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from lbconvert import LAMB
from lbconvert.config.read import TrainConfig
from lbconvert.optim.factory import describe_optimizer, make_optimizer, make_original_optimizer
from lbconvert.plan.plan import make_plan


def _cfg(**kw):
    base = dict(batch_size=64, lr=1e-3, epochs=10, optimizer="adamw", betas=(0.9, 0.98),
                eps=1e-7, weight_decay=0.05)
    base.update(kw)
    return TrainConfig(**base)


def _model():
    return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))


def test_lamb_plan_builds_lamb_with_the_plan_settings():
    plan = make_plan(_cfg(), 256)
    opt = make_optimizer(_model(), plan)
    assert isinstance(opt, LAMB)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(1e-3 * 2) and g["betas"] == (0.9, 0.98)
        assert g["eps"] == 1e-7
        assert g["weight_decay"] == (0.05 if g["lamb_adapt"] else 0.0)
    assert "β (0.9, 0.98)" in describe_optimizer(opt)


def test_keep_builds_adamw_with_the_rescaled_betas_and_the_original_arm_with_the_config():
    plan = make_plan(_cfg(), 256, optimizer="keep")  # M = 4
    opt = make_optimizer(_model(), plan)
    assert type(opt) is torch.optim.AdamW
    g = opt.param_groups[0]
    assert g["betas"] == pytest.approx((1 - 4 * 0.1, 1 - 4 * 0.02))
    assert g["eps"] == pytest.approx(1e-7 / 2) and g["lr"] == pytest.approx(2e-3)
    orig = make_original_optimizer(_model(), plan)
    g = orig.param_groups[0]
    assert type(orig) is torch.optim.AdamW and g["betas"] == (0.9, 0.98) and g["eps"] == 1e-7
    assert g["lr"] == 1e-3


@pytest.mark.parametrize("name, cls", [("adamw_torch_fused", torch.optim.AdamW),
                                       ("adam", torch.optim.Adam), ("fusedlamb", LAMB)])
def test_tool_spellings_rebuild_the_original(name, cls):
    plan = make_plan(_cfg(optimizer=name), 128, optimizer="keep")
    assert type(make_original_optimizer(_model(), plan)) is cls


def test_config_without_betas_uses_torch_defaults():
    plan = make_plan(_cfg(betas=None, eps=None), 128, optimizer="keep")  # M = 2
    g = make_optimizer(_model(), plan).param_groups[0]
    assert g["betas"] == pytest.approx((0.8, 0.998))
    assert g["eps"] == pytest.approx(1e-8 / math.sqrt(2))
    g = make_original_optimizer(_model(), plan).param_groups[0]
    assert g["betas"] == (0.9, 0.999) and g["eps"] == 1e-8
