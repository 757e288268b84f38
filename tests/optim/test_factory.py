"""make_optimizer + make_scheduler drive a real (small) training run as the plan says."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from lbconvert import LARS
from lbconvert.errors import LbconvertError
from lbconvert.optim.factory import describe_optimizer, make_optimizer, make_original_optimizer
from lbconvert.optim.scheduler import make_scheduler
from lbconvert.plan.plan import Plan
from lbconvert.plan.schedule import lr_curve


def make_plan(**kw) -> Plan:
    base = dict(
        source_batch=32, target_batch=256, ratio=8.0, rule="sqrt", regime="adapt",
        epochs_factor=2.0, lr_old=0.05, lr_new=0.05 * math.sqrt(8), lr_multiplier=math.sqrt(8),
        epochs_old=3.0, epochs_new=6.0, warmup_epochs=1.0, warmup_start_factor=0.25,
        schedule="multistep", milestones_old=[1.5, 2.5], milestones_new=[3.0, 5.0], gamma=0.1,
        optimizer_old="sgd", momentum=0.9, weight_decay=5e-4, trust_coefficient=0.001,
    )
    base.update(kw)
    return Plan(**base)


def small_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 6 * 6, 3))


def test_training_follows_plan_lr_value_by_value():
    plan = make_plan()
    spe = 4
    model = small_model()
    opt = make_optimizer(model, plan)
    sched = make_scheduler(opt, plan, spe)
    assert isinstance(opt, LARS) and sched.lbconvert_interval == "step"
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 3, (8,))
    seen = []
    w0 = model[0].weight.detach().clone()
    for _ in range(int(plan.epochs_new * spe) + 1):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        sched.step()
    assert not torch.equal(w0, model[0].weight)
    # every group follows the same schedule
    assert all(len(set(lrs)) == 1 for lrs in seen)
    lrs = [lrs[0] for lrs in seen]
    g = plan.lr_new
    # independent: warmup ramp 0.25 → 1 over 4 steps, ×0.1 at epoch 3 (step 12), at 5 (step 20)
    expect = ([g * (0.25 + 0.75 * k / 4) for k in range(4)] + [g] * 8 + [g * 0.1] * 8
              + [g * 0.01] * 5)
    assert lrs == pytest.approx(expect, rel=1e-9)
    # and against the report's curve sampled on the step grid
    curve = dict(lr_curve(plan, "new", points=int(plan.epochs_new * spe) + 1))
    for k, lr in enumerate(lrs):
        assert lr == pytest.approx(curve[k / spe],
                                   rel=1e-9)


def test_epoch_interval_poly():
    plan = make_plan(schedule="poly", poly_power=2.0, warmup_epochs=0.0)
    opt = make_optimizer(small_model(), plan)
    sched = make_scheduler(opt, plan, 4, interval="epoch")
    lrs = []
    for _ in range(7):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([plan.lr_new * (1 - e / 6) ** 2 for e in range(7)], abs=1e-12)


def test_lars_settings_from_plan_and_exclusions():
    plan = make_plan(nesterov=True, trust_coefficient=0.002)
    opt = make_optimizer(small_model(), plan, exclude_adapt=["4.*"])
    by_name = {n: g for g in opt.param_groups for n in g["param_names"]}
    assert by_name["0.weight"]["lars_adapt"] and by_name["0.weight"]["weight_decay"] == 5e-4
    assert not by_name["4.weight"]["lars_adapt"] and by_name["4.weight"]["weight_decay"] == 5e-4
    assert by_name["1.weight"]["weight_decay"] == 0.0
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["trust_coefficient"], g["nesterov"]) == (
        pytest.approx(plan.lr_new), 0.9, 0.002, True)


@pytest.mark.parametrize("old,cls", [("sgd", torch.optim.SGD), ("adamw", torch.optim.AdamW),
                                     ("rmsprop", torch.optim.RMSprop), (None, torch.optim.SGD)])
def test_keep_rebuilds_original_at_new_lr(old, cls):
    plan = make_plan(optimizer_new="keep", optimizer_old=old)
    opt = make_optimizer(small_model(), plan)
    assert type(opt) is cls
    assert all(g["lr"] == pytest.approx(plan.lr_new) for g in opt.param_groups)
    # the original run decayed everything; keep does too
    assert all(g["weight_decay"] == 5e-4 for g in opt.param_groups)
    if cls is torch.optim.SGD:
        assert opt.param_groups[0]["momentum"] == 0.9


def test_errors():
    with pytest.raises(LbconvertError, match="learning rate"):
        make_optimizer(small_model(), make_plan(lr_new=None))
    with pytest.raises(LbconvertError, match="original optimizer"):
        make_optimizer(small_model(), make_plan(optimizer_new="keep", optimizer_old="shampoo"))


def test_original_optimizer_is_one_builder_for_keep_and_the_smoke_arms():
    """make_original_optimizer builds optimizer_old at lr_old; keep and the smoke's original
    arm both come from it (one builder), and an SGD step matches the hand-written update."""
    from lbconvert.smoke import arms

    plan = make_plan(optimizer_old="sgd", nesterov=False)
    model = small_model()
    opt = make_original_optimizer(model, plan)
    assert type(opt) is torch.optim.SGD
    assert all(g["lr"] == pytest.approx(0.05) and g["weight_decay"] == 5e-4
               for g in opt.param_groups)
    assert describe_optimizer(opt) == "sgd (momentum 0.9, wd 0.0005)"
    w0 = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for p, w, g in zip(model.parameters(), w0, grads):
        # first step with momentum: buffer = g + wd·w; w ← w − lr·buffer
        torch.testing.assert_close(p.detach(), w - 0.05 * (g + 5e-4 * w))
    assert type(make_original_optimizer(small_model(), make_plan(optimizer_old="adam"),
                                        lr=0.01)) is torch.optim.Adam
    assert isinstance(make_original_optimizer(small_model(), make_plan(optimizer_old="lars")),
                      LARS)
    assert "make_original_optimizer" in open(arms.__file__).read()
    assert not hasattr(arms, "_old_optimizer")
    with pytest.raises(LbconvertError, match="learning rate"):
        make_original_optimizer(small_model(), make_plan(lr_old=None))
