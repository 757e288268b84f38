"""make_plan: the seeds from Hoffer/Goyal/You, devices, warmup, ghost batch, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.config.read import TrainConfig, load_config
from lbconvert.errors import LbconvertError
from lbconvert.plan.devices import split_batch
from lbconvert.plan.plan import make_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "examples" / "cifar_resnet.yaml"


def seed_cfg(**kw) -> TrainConfig:
    base = dict(batch_size=32, per_device_batch=32, lr=0.1, epochs=100, dataset_size=50000,
                schedule="multistep", milestones=[50.0, 75.0], gamma=0.1, momentum=0.9,
                weight_decay=5e-4, optimizer="sgd")
    base.update(kw)
    return TrainConfig(**base)


def changed(plan, name):
    return next(c for c in plan.changes if c.field == name)


def test_hoffer_seed_adapt_sqrt():
    plan = make_plan(seed_cfg(), 1024)
    assert plan.ratio == 32
    assert plan.epochs_new == 3200
    assert plan.lr_new == pytest.approx(0.1 * math.sqrt(32))
    assert plan.milestones_new == [1600, 2400]
    assert changed(plan, "milestones").new == [1600, 2400]
    assert changed(plan, "lr").new == plan.lr_new
    assert "Hoffer" in changed(plan, "lr").reason and "Hoffer" in changed(plan, "epochs").reason
    # same number of updates: samples grow ×M, batch grows ×M
    assert plan.samples_new == 32 * plan.samples_old
    assert any("compute" in w for w in plan.warnings)


def test_linear_and_none_rules_and_budget_regime():
    assert make_plan(seed_cfg(), 1024, rule="linear").lr_new == pytest.approx(0.1 * 32)
    plan = make_plan(seed_cfg(), 1024, rule="none", regime="budget")
    assert plan.lr_new == 0.1 and plan.epochs_new == 100 and plan.milestones_new == [50, 75]
    assert not any(c.field in ("lr", "epochs") for c in plan.changes)
    plan = make_plan(seed_cfg(), 1024, regime="2.5")
    assert plan.epochs_new == 250 and plan.milestones_new == [125, 187.5]


def test_cost_numbers_are_recomputed_independently():
    plan = make_plan(seed_cfg(), 1024)
    assert plan.steps_per_epoch_old == -(-50000 // 32)
    assert plan.steps_per_epoch_new == -(-50000 // 1024)
    assert plan.updates_old == (50000 + 31) // 32 * 100
    assert plan.updates_new == (50000 + 1023) // 1024 * 3200
    assert plan.samples_old == 50000 * 100


def test_default_warmup_scales_with_regime_and_starts_at_old_lr():
    plan = make_plan(seed_cfg(), 1024, regime="budget")
    assert plan.warmup_epochs == 5  # Goyal et al.: 5 epochs
    assert plan.warmup_start_factor == pytest.approx(1 / math.sqrt(32))
    plan = make_plan(seed_cfg(), 128)  # M = 4, adapt: 400 epochs, 20 warmup
    assert plan.warmup_epochs == 20
    assert plan.warmup_epochs <= plan.epochs_new / 10


def test_default_warmup_capped_at_tenth_with_warning():
    plan = make_plan(seed_cfg(epochs=20), 64, regime="budget")
    assert plan.warmup_epochs == pytest.approx(2.0)
    assert any("tenth" in w for w in plan.warnings)


def test_explicit_warmup_kept_but_warned_and_none():
    plan = make_plan(seed_cfg(), 64, regime="budget", warmup="30")
    assert plan.warmup_epochs == 30 and any("tenth" in w for w in plan.warnings)
    plan = make_plan(seed_cfg(), 64, warmup="none")
    assert plan.warmup_epochs == 0
    with pytest.raises(LbconvertError, match="--warmup"):
        make_plan(seed_cfg(), 64, warmup="soon")


def test_config_warmup_longer_than_goyal_is_kept_and_scaled():
    plan = make_plan(seed_cfg(warmup_epochs=8), 64)
    assert plan.warmup_epochs_old == 8 and plan.warmup_epochs == 16


def test_ghost_batch_default_cap_and_warnings():
    # default: 4 (Masters & Luschi 2018; the fidelity benchmark), at most the original batch
    # and the per-device batch
    # (inside the fidelity benchmark's range; beyond it: tests/plan/test_devices.py)
    plan = make_plan(seed_cfg(batch_size=16, dataset_size=2048), 1024, devices=16)
    assert plan.per_device_batch == 64 and plan.ghost_batch_size == 4
    ghost = next(c for c in plan.changes if c.field == "ghost_batch_size")
    assert "Masters & Luschi" in ghost.reason and "fidelity" in ghost.reason
    plan = make_plan(seed_cfg(batch_size=2, dataset_size=2048), 64)
    assert plan.ghost_batch_size == 2 and "original batch 2" in next(
        c for c in plan.changes if c.field == "ghost_batch_size").reason
    plan = make_plan(seed_cfg(), 1024, devices=512)  # 2 per device
    assert plan.ghost_batch_size == 2 and "capped at the per-device batch 2" in next(
        c for c in plan.changes if c.field == "ghost_batch_size").reason
    assert not any("Masters & Luschi" in w for w in plan.warnings)
    plan = make_plan(seed_cfg(batch_size=512), 8192, ghost_batch=128)
    assert plan.ghost_batch_size == 128
    assert any("Masters & Luschi" in w for w in plan.warnings)
    plan = make_plan(seed_cfg(), 1024, ghost_batch=16)
    assert plan.ghost_batch_size == 16 and not any("Masters" in w for w in plan.warnings)
    with pytest.raises(LbconvertError, match="--ghost-batch 256 is larger"):
        make_plan(seed_cfg(), 1024, devices=8, ghost_batch=256)


def test_devices_and_max_per_device_reach_target_exactly():
    plan = make_plan(seed_cfg(), 8192, devices=8, max_per_device=256)
    assert (plan.devices, plan.per_device_batch, plan.grad_accum) == (8, 256, 4)
    assert plan.devices * plan.per_device_batch * plan.grad_accum == 8192
    assert plan.per_device_batch % plan.ghost_batch_size == 0


def test_unreachable_target_names_nearest_feasible():
    with pytest.raises(LbconvertError) as err:  # 999 and 1002: the neighbouring multiples of 3
        make_plan(seed_cfg(), 1000, devices=3)
    assert "999" in str(err.value) and "1002" in str(err.value)
    with pytest.raises(LbconvertError) as err:
        make_plan(seed_cfg(), 1000, max_per_device=256, ghost_batch=32)
    assert "992" in str(err.value) and "1024" in str(err.value)  # multiples of the ghost 32


def test_target_smaller_than_current_and_missing_batch():
    with pytest.raises(LbconvertError, match="--target-batch 16 is smaller.*batch 32"):
        make_plan(seed_cfg(), 16)
    with pytest.raises(LbconvertError, match="no batch size.*--batch-size"):
        make_plan(TrainConfig(path="x.yaml"), 1024)


@pytest.mark.parametrize("kw,flag", [
    ({"rule": "cube"}, "--rule"), ({"regime": "forever"}, "--regime"),
    ({"regime": "-2"}, "--regime"), ({"optimizer": "adam"}, "--optimizer"),
])
def test_unknown_options(kw, flag):
    with pytest.raises(LbconvertError, match=flag):
        make_plan(seed_cfg(), 64, **kw)


def test_same_batch_changes_no_schedule():
    plan = make_plan(seed_cfg(), 32, regime="adapt")
    assert plan.ratio == 1 and plan.lr_new == 0.1 and plan.epochs_new == 100
    assert not any(c.field in ("batch_size", "lr", "epochs", "milestones") for c in plan.changes)
    assert any("M = 1" in n for n in plan.notes)


def test_lars_settings_and_poly_power():
    plan = make_plan(seed_cfg(schedule="poly", poly_power=1.0, milestones=[]), 1024)
    assert plan.optimizer_new == "lars" and plan.trust_coefficient == 0.001
    assert plan.momentum == 0.9 and plan.weight_decay == 5e-4
    assert plan.poly_power == 2.0 and changed(plan, "poly_power").old == 1.0
    plan = make_plan(seed_cfg(), 1024, optimizer="keep")
    assert plan.optimizer_new == "keep" and plan.poly_power is None
    assert not any(c.field == "optimizer" for c in plan.changes)


def test_exponential_gamma_keeps_total_decay():
    plan = make_plan(seed_cfg(schedule="exponential", gamma=0.95, milestones=[]), 128)
    assert plan.gamma == 0.95  # the config's own gamma stays; the new run's per-epoch one:
    assert plan.exp_gamma_new ** plan.epochs_new == pytest.approx(0.95 ** 100)


def test_step_size_and_max_steps_scale():
    plan = make_plan(seed_cfg(schedule="step", milestones=[], step_size=30.0), 128)
    assert plan.step_size_new == 120
    assert plan.milestones_old == [30, 60, 90] and plan.milestones_new == [120, 240, 360]
    assert not any(c.field == "milestones" for c in plan.changes)  # the step_size row says it
    plan = make_plan(seed_cfg(epochs=None, max_steps=1000, dataset_size=None), 128)
    assert plan.max_steps_new == 1000  # adapt: same updates
    plan = make_plan(seed_cfg(epochs=None, max_steps=1000), 128, regime="budget")
    assert plan.max_steps_new == 250


def test_example_plan_for_8192():
    plan = make_plan(load_config(EXAMPLE), 8192)
    assert plan.ratio == 64 and plan.lr_new == pytest.approx(0.8)
    assert plan.epochs_new == 164 * 64 and plan.milestones_new == [81 * 64, 122 * 64]
    assert plan.warmup_epochs == 5 * 64
    assert plan.to_dict()["changes"][0] == {"field": "batch_size", "old": 128, "new": 8192,
                                            "reason": plan.changes[0].reason}


@settings(max_examples=60, deadline=None)
@given(source=st.integers(1, 512), mult=st.integers(1, 64),
       rule=st.sampled_from(["sqrt", "linear", "none"]))
def test_lr_multiplier_property(source, mult, rule):
    plan = make_plan(seed_cfg(batch_size=source, per_device_batch=source), source * mult,
                     rule=rule, ghost_batch=1)
    expected = {"sqrt": math.sqrt(mult), "linear": mult, "none": 1}[rule]
    assert plan.lr_new == pytest.approx(0.1 * expected)
    assert plan.epochs_new == pytest.approx(100 * mult)


@settings(max_examples=80, deadline=None)
@given(target=st.integers(1, 20000), devices=st.integers(1, 16),
       cap=st.none() | st.integers(1, 2048), ghost=st.sampled_from([1, 8, 32, 128]))
def test_split_batch_is_exact_or_none(target, devices, cap, ghost):
    split = split_batch(target, devices, cap, ghost)
    if split is None:
        assert target % devices or (cap is not None and target // devices > cap)
        return
    micro, accum = split
    assert devices * micro * accum == target
    if cap is not None:
        assert micro <= cap
    if accum > 1:
        assert micro % ghost == 0
