"""‖w_t − w_0‖ (lbconvert.measure.distance) against an independent computation: every
parameter flattened and concatenated with torch.cat, one norm, in float64."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from lbconvert.measure.distance import WeightDistance, param_groups_for_distance, stack_norms
from lbconvert.monitor.diffusion import DISTANCE_TAG, DiffusionMonitor
from tests.helpers import TinyNet


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().double().flatten() for t in tensors])


def _move(model: nn.Module, scale: float = 0.1, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * scale)


def test_distance_matches_the_norm_of_the_concatenated_parameters():
    torch.manual_seed(0)
    model = TinyNet()
    w0 = _flat(model.parameters())
    dist = WeightDistance(model)
    assert dist.measure() == (0.0, dict.fromkeys(["conv1", "bn1", "conv2", "bn2", "fc"], 0.0))
    _move(model)
    total, groups = dist.measure()
    ref = float(torch.linalg.vector_norm(_flat(model.parameters()) - w0))
    assert ref > 0.1
    assert total == pytest.approx(ref, rel=1e-6)
    # each group against its own concatenation
    for g, names in param_groups_for_distance(model).items():
        params = dict(model.named_parameters())
        cur = _flat(params[n] for n in names)
        start = _flat(p for n, p in zip(dist.order, dist.w0) if n in names)
        assert groups[g] == pytest.approx(float(torch.linalg.vector_norm(cur - start)), rel=1e-6)


def test_float64_is_kept_and_frozen_parameters_are_left_out():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3)).double()
    model[0].bias.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    w0 = _flat(trainable)
    dist = WeightDistance(model)
    _move(model, scale=1e-3)
    ref = float(torch.linalg.vector_norm(_flat(trainable) - w0))
    total, groups = dist.measure()
    assert total == pytest.approx(ref, rel=1e-12)  # float64 all the way
    assert dist.order == ["0.weight", "1.weight", "1.bias"] and set(groups) == {"0", "1"}
    assert stack_norms([p for p in trainable]).dtype == torch.float64


def test_w0_kept_in_bf16_is_the_distance_from_the_rounded_w0():
    torch.manual_seed(0)
    model = TinyNet()
    w0_bf16 = _flat(p.detach().to(torch.bfloat16) for p in model.parameters())
    dist = WeightDistance(model, w0_device="cpu", w0_dtype=torch.bfloat16)
    assert dist.memory_bytes == 2 * sum(p.numel() for p in model.parameters())
    _move(model)
    ref = float(torch.linalg.vector_norm(_flat(model.parameters()) - w0_bf16))
    assert dist.measure()[0] == pytest.approx(ref, rel=1e-5)


def test_groups_go_one_level_deeper_under_a_single_container():
    nested = nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)))
    assert param_groups_for_distance(nested) == {"0.0": ["0.0.weight", "0.0.bias"],
                                                 "0.1": ["0.1.weight", "0.1.bias"]}


def test_smoke_and_monitor_measure_the_same_number():
    # The smoke arms and the monitor share one measurement: same weights, same distances.
    torch.manual_seed(0)
    model = TinyNet()
    monitor = DiffusionMonitor(model, every_n_steps=1)
    own = WeightDistance(model)
    _move(model)
    vals = monitor.measure()
    total, groups = own.measure()
    assert vals[DISTANCE_TAG] == total
    assert {g: vals[f"{DISTANCE_TAG}/{g}"] for g in groups} == groups


# Moved from tests/smoke/test_run.py with the tracker it tested (smoke's DistanceTracker is now
# lbconvert.measure.distance.WeightDistance); assertions unchanged.
def test_distance_tracker_matches_direct_norm():
    torch.manual_seed(0)
    model = TinyNet()
    tracker = WeightDistance(model)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    total, groups = tracker.measure()
    ref = math.sqrt(
        sum(float((p.detach() - w0[n]).pow(2).sum()) for n, p in model.named_parameters())
    )
    assert total == pytest.approx(ref, rel=1e-6)
    assert set(groups) == {"conv1", "bn1", "conv2", "bn2", "fc"}
    assert math.sqrt(sum(v * v for v in groups.values())) == pytest.approx(ref, rel=1e-6)
    ref_bn1 = math.sqrt(
        sum(
            float((p.detach() - w0[n]).pow(2).sum())
            for n, p in model.named_parameters()
            if n.startswith("bn1.")
        )
    )
    assert groups["bn1"] == pytest.approx(ref_bn1, rel=1e-6)
    # One top-level container: groups go one level deeper.
    assert set(
        param_groups_for_distance(nn.Sequential(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))))
    ) == {"0.0", "0.1"}
