"""The plan's ghost row states GhostBatchNorm's measured cost (issue 25.4)."""

from __future__ import annotations

from lbconvert.plan import ghost_cost


def test_note_only_where_a_measured_ratio_is_above_the_threshold(monkeypatch):
    assert ghost_cost.ghost_cost_note(32, dim="2d") == ""
    note = ghost_cost.ghost_cost_note(4)
    low, high = ghost_cost.RATIOS[("cpu", "nc", 4)]
    assert f"BatchNorm1d (N, C) layers {low:.2f}-{high:.2f}×" in note and "ghost 4" in note
    clow, chigh = ghost_cost.COMPILED_RATIOS[("cpu", "nc", 4)]
    assert f"under torch.compile {clow:.2f}-{chigh:.2f}×" in note
    assert "BatchNorm2d layers" not in note  # at most 1.03× at ghost 4
    monkeypatch.setitem(ghost_cost.RATIOS, ("cpu", "2d", 4), (0.9, 1.5))
    assert "BatchNorm2d layers 0.90-1.50×" in ghost_cost.ghost_cost_note(4)
    assert "nearest measured to 5" in ghost_cost.ghost_cost_note(5)
    assert "unmeasured" in ghost_cost.ghost_cost_note(4, device="cuda")


def test_plan_ghost_row_carries_the_note():
    from lbconvert.config.fields import TrainConfig
    from lbconvert.plan.devices import plan_devices
    from lbconvert.plan.types import Plan

    plan = Plan(source_batch=32, target_batch=1024, ratio=32.0, rule="sqrt", regime="adapt",
                epochs_factor=32.0, lr_old=0.1, lr_new=0.57, lr_multiplier=5.7, epochs_old=10,
                epochs_new=320)
    plan_devices(plan, TrainConfig(batch_size=32, lr=0.1), None, None, 4)
    why = next(c for c in plan.changes if c.field == "ghost_batch_size").reason
    assert "GhostBatchNorm costs more than BatchNorm" in why
