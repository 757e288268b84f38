"""The smoke test's noise scale B_simple (lbconvert.smoke.noise): the measurement at the original
weights against an independent computation of the two gradient norms, its size within the
budget, and what run_smoke records."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F

from lbconvert.rewrite.surgery import rewrite
from lbconvert.smoke.arms import ArmSetup
from lbconvert.smoke.data import make_pool
from lbconvert.smoke.noise import (
    MIN_K,
    MIN_ROUNDS,
    ProbeSize,
    measure_point,
    resize,
    size_probe,
)
from lbconvert.smoke.proxy import Proxy, choose_proxy
from tests.helpers import TinyNet
from tests.helpers import run_tiny as _run
from tests.helpers import tiny_plan as _plan


def _setup(model, micro_cap=None, pool_size=256):
    proxy = Proxy(small_batch=4, large_batch=32, ratio=8.0, plan_ratio=16.0, ghost_batch_size=4,
                  plan_ghost_batch_size=4, ghost_scaled=False, steps_per_epoch=4,
                  warmup_steps_plan=0, warmup_steps=0)
    pool = make_pool("synthetic", input_shape=(3, 6, 6), num_classes=4, output_dim=4,
                     pool_size=pool_size, seed=0, device="cpu")
    pool.x = pool.x.double()
    conv = rewrite(copy.deepcopy(model), 4).model
    return ArmSetup(model, conv, _plan(), proxy, pool, "cpu", micro_cap)


def _independent(model, pool, b_s, micro, k, rounds, seed):
    """Per round: k gradients of b_s samples of the seeded stream (one autograd.grad of the
    summed micro-batch losses, train mode, on a copy), then eqs. A.2–A.3 by hand."""
    net = copy.deepcopy(model).train()
    params = [p for p in net.parameters() if p.requires_grad]
    stream = pool.stream(seed)
    s_est, g_est = [], []
    for _ in range(rounds):
        grads = []
        for _ in range(k):
            idx = stream.take(b_s)
            loss = sum(F.cross_entropy(net(pool.x[c]), pool.y[c]) * (c.numel() / b_s)
                       for c in idx.split(micro))
            grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)]))
        small = sum(float(g @ g) for g in grads) / k
        mean = torch.stack(grads).mean(0)
        big, b_big = float(mean @ mean), k * b_s
        g_est.append((b_big * big - b_s * small) / (b_big - b_s))
        s_est.append((small - big) / (1 / b_s - 1 / b_big))
    return sum(s_est) / rounds / (sum(g_est) / rounds)


@pytest.mark.parametrize("micro_cap", [None, 2])
def test_measure_point_matches_an_independent_computation(micro_cap):
    torch.manual_seed(0)
    model = TinyNet().double()
    setup = _setup(model, micro_cap)
    state = copy.deepcopy(model.state_dict())
    size = ProbeSize(k=6, rounds=3)
    got = measure_point(setup, model, size, seed=3)
    want = _independent(model, setup.pool, 4, setup.micro["original"], 6, 3, seed=3)
    assert got["b_simple"] == pytest.approx(want, rel=1e-9)
    assert (got["b_small"], got["b_big"], got["rounds"], got["passes"]) == (4, 24, 3, 18)
    # The model measured is a copy: weights and BatchNorm running statistics untouched.
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert all(p.grad is None for p in model.parameters())


def test_size_probe_keeps_within_its_share_of_the_budget():
    setup = _setup(TinyNet())
    full = size_probe(setup, step_time=1e-4, time_budget=60)
    assert (full.k, full.rounds, full.note) == (MIN_K * 2, 4, None)  # k = b_l/b_s = 8
    assert full.k * 4 == setup.proxy.large_batch
    tight = size_probe(setup, step_time=1.0, time_budget=60)  # 6 passes allowed
    assert (tight.k, tight.rounds) == (MIN_K, MIN_ROUNDS) and "B_big = 16" in tight.note
    assert tight.passes == 2 * MIN_ROUNDS * MIN_K
    small_pool = size_probe(_setup(TinyNet(), pool_size=20), step_time=1e-4, time_budget=60)
    assert small_pool.k == 5  # fresh samples within a round: 20 // 4


def test_resize_fits_the_second_point_at_the_cost_the_first_one_took():
    setup = _setup(TinyNet())
    size = ProbeSize(k=8, rounds=4)
    assert resize(size, setup, spent=0.32, passes_done=32, time_budget=60) == size  # 0.01 s/pass
    slow = resize(size, setup, spent=5.0, passes_done=32, time_budget=60)  # 1 s left, 0.16 s/pass
    assert (slow.k, slow.rounds) == (MIN_K, MIN_ROUNDS) and "took 5s" in slow.note
    assert resize(size, setup, spent=0.0, passes_done=0, time_budget=60) == size


@pytest.fixture(scope="module")
def measured():
    torch.manual_seed(0)
    model = TinyNet()
    conv = rewrite(copy.deepcopy(model), 4).model
    result = _run(model, conv, _plan(), steps=12, seed=0)
    return model, result


def test_run_smoke_records_the_noise_scale_at_the_original_weights(measured):
    model, result = measured
    ns = result.noise_scale
    assert [p["at"] for p in ns["points"]] == ["init", "end of the original arm"]
    assert [p["update"] for p in ns["points"]] == [0, result.arms["original"].steps]
    assert ns["b_simple"] == ns["points"][-1]["b_simple"] and ns["at"] == ns["points"][-1]["at"]
    assert (ns["weights"], ns["mode"], ns["data"], ns["synthetic"]) == (
        "original", "train", "synthetic", True)
    assert ns["cost"]["passes"] == sum(p["passes"] for p in ns["points"])
    assert ns["cost"]["samples"] == ns["cost"]["passes"] * ns["b_small"]
    assert result.timings["noise_scale"] > 0
    # The init point is B_simple of the user's weights on the smoke's own stream, as run.
    plan = _plan()
    proxy = choose_proxy(plan, "cpu", None)
    pool = make_pool("synthetic", input_shape=(3, 6, 6), num_classes=4, output_dim=4,
                     pool_size=max(proxy.large_batch * 4, 2048), seed=0, device="cpu")
    setup = ArmSetup(model, rewrite(copy.deepcopy(model), 4).model, plan, proxy, pool, "cpu")
    k = ns["b_big"] // ns["b_small"]
    want = _independent(model, pool, ns["b_small"], setup.micro["original"], k, ns["rounds"],
                        seed=0)
    assert ns["points"][0]["b_simple"] == pytest.approx(want, rel=1e-4)
    d = json.loads(json.dumps(result.to_dict(), allow_nan=False))["noise_scale"]
    assert d["b_small"] == ns["b_small"] and math.isfinite(d["points"][0]["b_simple"])


def test_not_measured_when_switched_off():
    torch.manual_seed(0)
    model = TinyNet()
    conv = rewrite(copy.deepcopy(model), 4).model
    off = _run(model, conv, _plan(), steps=6, noise_scale=False)
    assert off.noise_scale is None and "noise_scale" not in off.timings
