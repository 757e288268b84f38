"""LARS against an independent plain-Python loop of You et al. 2017 Algorithm 1."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert import LARS
from lbconvert.errors import LbconvertError

# --- the independent reference: Python floats, one tensor at a time ------------------------


def _norm(xs):
    return math.sqrt(sum(x * x for x in xs))


def ref_lars(ws, grads_per_step, *, lr, momentum, wd, eta, adapt, decay, nesterov=False,
             clip=False, eps=0.0):
    """Run Algorithm 1 on flat lists of floats; ``adapt``/``decay`` are per-tensor flags."""
    ws = [list(w) for w in ws]
    bufs = [[0.0] * len(w) for w in ws]
    for grads in grads_per_step:
        for i, (w, g) in enumerate(zip(ws, grads)):
            beta = wd if decay[i] else 0.0
            wn, gn = _norm(w), _norm(g)
            if adapt[i] and wn > 0 and gn > 0:
                local = eta * wn / (gn + beta * wn + eps)  # step 1
                step_lr = min(local, lr) if clip else lr * local  # step 2 (LARC clip)
            else:
                step_lr = lr
            d = [gj + beta * wj for gj, wj in zip(g, w)]  # step 3
            bufs[i] = [momentum * a + step_lr * dj for a, dj in zip(bufs[i], d)]  # step 4
            if nesterov:
                upd = [step_lr * dj + momentum * a for dj, a in zip(d, bufs[i])]
            else:
                upd = bufs[i]
            ws[i] = [wj - u for wj, u in zip(w, upd)]  # step 5
    return ws


def _random_case(shapes, steps, seed, grad_scales=None):
    gen = torch.Generator().manual_seed(seed)
    ws = [torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
    scales = grad_scales or [1.0] * len(shapes)
    gs = [[torch.randn(s, generator=gen, dtype=torch.float64) * sc for s, sc in zip(shapes, scales)]
          for _ in range(steps)]
    return ws, gs


def _run_lars(ws, gs, **kw):
    params = [torch.nn.Parameter(w.clone()) for w in ws]
    named = [(f"layer{i}.weight" if w.ndim > 1 else f"layer{i}.bias", p)
             for i, (w, p) in enumerate(zip(ws, params))]
    opt = LARS(named, **kw)
    for grads in gs:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return params, opt


SHAPES = [(6, 3, 3, 3), (6,), (10, 24), (10,), (4, 4)]
GRAD_SCALES = [1.0, 1.0, 1e-3, 1.0, 1e-5]  # spread local_lr so that trust_clip binds for some


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("wd", [0.0, 5e-4])
@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("exclude", ["default", "none"])
def test_matches_reference(momentum, wd, clip, exclude):
    ws, gs = _random_case(SHAPES, steps=4, seed=1, grad_scales=GRAD_SCALES)
    lr, eta = 0.5, 0.001
    excl = None if exclude == "default" else False
    params, _ = _run_lars(ws, gs, lr=lr, momentum=momentum, weight_decay=wd,
                          trust_coefficient=eta, trust_clip=clip,
                          exclude_adapt=excl, exclude_decay=excl)
    flags = [w.ndim > 1 or exclude == "none" for w in ws]
    expect = ref_lars([w.flatten().tolist() for w in ws],
                      [[g.flatten().tolist() for g in step] for step in gs],
                      lr=lr, momentum=momentum, wd=wd, eta=eta, adapt=flags, decay=flags,
                      clip=clip)
    for p, e in zip(params, expect):
        assert torch.allclose(p.detach().flatten(), torch.tensor(e, dtype=torch.float64),
                              rtol=0, atol=1e-9)
    # the case must exercise what it claims: weights moved, and clip binds somewhere
    assert not torch.equal(params[0].detach(), ws[0])
    if clip:
        local = [0.001 * ws[i].norm() / (gs[0][i].norm() + wd * ws[i].norm())
                 for i in range(len(ws)) if flags[i]]
        assert any(x > lr for x in local) and any(x < lr for x in local)


@pytest.mark.parametrize("foreach", [True, False])
def test_nesterov_matches_reference(foreach):
    ws, gs = _random_case(SHAPES, steps=3, seed=2)
    params, _ = _run_lars(ws, gs, lr=0.2, momentum=0.9, weight_decay=5e-4, nesterov=True,
                          foreach=foreach)
    flags = [w.ndim > 1 for w in ws]
    expect = ref_lars([w.flatten().tolist() for w in ws],
                      [[g.flatten().tolist() for g in step] for step in gs],
                      lr=0.2, momentum=0.9, wd=5e-4, eta=0.001, adapt=flags, decay=flags,
                      nesterov=True)
    for p, e in zip(params, expect):
        assert torch.allclose(p.detach().flatten(), torch.tensor(e, dtype=torch.float64), atol=1e-9)


def test_float32_within_1e6_and_eps():
    ws, gs = _random_case(SHAPES, steps=5, seed=3)
    ws32 = [w.float() for w in ws]
    gs32 = [[g.float() for g in step] for step in gs]
    params, _ = _run_lars(ws32, gs32, lr=1.0, momentum=0.9, weight_decay=5e-4, eps=1e-3)
    flags = [w.ndim > 1 for w in ws]
    expect = ref_lars([w.flatten().tolist() for w in ws32],
                      [[g.flatten().tolist() for g in step] for step in gs32],
                      lr=1.0, momentum=0.9, wd=5e-4, eta=0.001, adapt=flags, decay=flags,
                      eps=1e-3)
    for p, e in zip(params, expect):
        err = (p.detach().double().flatten() - torch.tensor(e, dtype=torch.float64)).abs().max()
        assert err <= 1e-6


def test_zero_norms_give_plain_step_no_nan():
    w_zero = torch.zeros(3, 4, dtype=torch.float64)
    w = torch.randn(3, 4, dtype=torch.float64)
    g = torch.randn(3, 4, dtype=torch.float64)
    g_zero = torch.zeros(3, 4, dtype=torch.float64)
    both_zero = torch.zeros(2, 2, dtype=torch.float64)
    ws = [w_zero, w, both_zero]
    gs = [[g, g_zero, both_zero.clone()], [g * 2, g_zero, both_zero.clone()]]
    for clip in (False, True):
        params, _ = _run_lars(ws, gs, lr=0.3, momentum=0.9, weight_decay=1e-2,
                              trust_clip=clip)
        expect = ref_lars([x.flatten().tolist() for x in ws],
                          [[x.flatten().tolist() for x in step] for step in gs],
                          lr=0.3, momentum=0.9, wd=1e-2, eta=0.001, adapt=[True] * 3,
                          decay=[True] * 3, clip=clip)
        for p, e in zip(params, expect):
            assert torch.isfinite(p).all()
            assert torch.allclose(p.detach().flatten(), torch.tensor(e, dtype=torch.float64))
    # ‖w‖ = 0 (and ‖∇w‖ = 0): one step is exactly the plain SGD step at γ
    params, _ = _run_lars(ws, gs[:1], lr=0.3, momentum=0.9, weight_decay=1e-2)
    assert torch.equal(params[0].detach(), -0.3 * g)
    assert torch.allclose(params[1].detach(), w - 0.3 * 1e-2 * w)


def test_foreach_equals_single_tensor():
    ws, gs = _random_case(SHAPES, steps=3, seed=4)
    a, _ = _run_lars(ws, gs, lr=0.1, weight_decay=1e-4, trust_clip=True, foreach=True)
    b, _ = _run_lars(ws, gs, lr=0.1, weight_decay=1e-4, trust_clip=True, foreach=False)
    for x, y in zip(a, b):
        assert torch.allclose(x, y, rtol=0, atol=1e-12)


def test_state_dict_round_trip_resumes_identically():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
    data = [torch.randn(8, 5) for _ in range(6)]

    def train(m, opt, batches):
        for x in batches:
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()

    opt = LARS(model, lr=0.5, momentum=0.9, weight_decay=1e-3)
    train(model, opt, data[:3])
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    train(model, opt, data[3:])

    model2 = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))
    model2.load_state_dict(saved_model)
    opt2 = LARS(model2, lr=0.01)  # hyper-parameters come back from the state dict
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups[0]["lr"] == 0.5
    train(model2, opt2, data[3:])
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_params_without_grad_are_skipped():
    a = torch.nn.Parameter(torch.randn(3, 3))
    b = torch.nn.Parameter(torch.randn(3, 3))
    before = b.detach().clone()
    opt = LARS([a, b], lr=0.1)
    a.grad = torch.randn(3, 3)
    opt.step()
    assert torch.equal(b.detach(), before)
    assert b not in opt.state and a in opt.state


def test_sparse_grad_is_refused():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = LARS(emb, lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(LbconvertError, match="sparse"):
        opt.step()


def test_explicit_groups_decide_adaptation():
    w = torch.nn.Parameter(torch.randn(4, 4, dtype=torch.float64))
    v = torch.nn.Parameter(torch.randn(4, 4, dtype=torch.float64))
    g = torch.randn(4, 4, dtype=torch.float64)
    opt = LARS([{"params": [w], "lars_adapt": False}, {"params": [v]}], lr=0.1, momentum=0.0)
    w0, v0 = w.detach().clone(), v.detach().clone()
    w.grad, v.grad = g.clone(), g.clone()
    opt.step()
    assert torch.allclose(w.detach(), w0 - 0.1 * g)
    assert torch.allclose(v.detach(), v0 - 0.1 * 0.001 * v0.norm() / g.norm() * g)
    with pytest.raises(LbconvertError, match="group"):
        LARS([{"params": [w]}], lr=0.1, exclude_adapt=False)


def test_invalid_hyperparameters():
    p = [torch.nn.Parameter(torch.randn(2, 2))]
    for kw in ({"lr": -1.0}, {"lr": 0.1, "momentum": -0.5}, {"lr": 0.1, "momentum": 0.0,
                                                               "nesterov": True}):
        with pytest.raises(LbconvertError):
            LARS(p, **kw)


def test_step_has_no_host_sync(monkeypatch):
    ws, gs = _random_case(SHAPES, steps=1, seed=5)
    params = [torch.nn.Parameter(w.clone()) for w in ws]
    opt = LARS(params, lr=0.1, weight_decay=1e-4, trust_clip=True)
    for p, g in zip(params, gs[0]):
        p.grad = g

    def boom(*_a, **_k):
        raise AssertionError("host sync in LARS.step")

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, boom)
    opt.step()
    opt.step()


def test_half_precision_runs():
    p = torch.nn.Parameter(torch.randn(8, 8, dtype=torch.bfloat16))
    opt = LARS([p], lr=1.0, weight_decay=1e-4)
    p.grad = torch.randn(8, 8, dtype=torch.bfloat16)
    opt.step()
    assert p.dtype == torch.bfloat16 and torch.isfinite(p.float()).all()


@settings(max_examples=25, deadline=None)
@given(
    shapes=st.lists(
        st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4
    ),
    momentum=st.sampled_from([0.0, 0.9]),
    clip=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_any_shapes(shapes, momentum, clip, seed):
    ws, gs = _random_case(shapes, steps=2, seed=seed)
    params, _ = _run_lars(ws, gs, lr=0.7, momentum=momentum, weight_decay=1e-3, trust_clip=clip,
                          exclude_adapt=False, exclude_decay=False)
    expect = ref_lars([w.flatten().tolist() for w in ws],
                      [[g.flatten().tolist() for g in step] for step in gs],
                      lr=0.7, momentum=momentum, wd=1e-3, eta=0.001, adapt=[True] * len(ws),
                      decay=[True] * len(ws), clip=clip)
    for p, e in zip(params, expect):
        assert torch.allclose(p.detach().flatten(), torch.tensor(e, dtype=torch.float64), atol=1e-9)


def test_trust_match_sets_eta_so_the_median_layer_steps_like_sgd():
    torch.manual_seed(0)
    ws = [torch.randn(6, 4) * s for s in (0.1, 1.0, 3.0)]
    grads = [torch.randn_like(w) * g for w, g in zip(ws, (2.0, 0.5, 0.01))]
    params = [torch.nn.Parameter(w.clone()) for w in ws]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt = LARS(params, lr=0.1, momentum=0.0, weight_decay=1e-4, trust_match=True)
    opt.step()
    group = opt.param_groups[0]
    ratios = sorted(float(w.norm() / (g.norm() + 1e-4 * w.norm())) for w, g in zip(ws, grads))
    assert group["trust_matched"] and group["trust_coefficient"] == pytest.approx(1 / ratios[1])
    # the median layer moved exactly as SGD at γ would (plus its weight decay term)
    mid = min(range(3), key=lambda i: abs(ratios[1] - float(
        ws[i].norm() / (grads[i].norm() + 1e-4 * ws[i].norm()))))
    sgd = ws[mid] - 0.1 * (grads[mid] + 1e-4 * ws[mid])
    torch.testing.assert_close(params[mid].detach(), sgd)
    # matched once: later steps keep the η found at the first one, and so does a reload
    eta = group["trust_coefficient"]
    for p in params:
        p.grad = torch.randn_like(p)
    opt.step()
    assert opt.param_groups[0]["trust_coefficient"] == eta
    fresh = LARS([torch.nn.Parameter(w.clone()) for w in ws], lr=0.1, trust_match=True)
    fresh.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert fresh.param_groups[0]["trust_coefficient"] == eta
    assert fresh.param_groups[0]["trust_matched"]


def test_trust_match_off_by_default_keeps_the_paper_eta():
    p = torch.nn.Parameter(torch.ones(3, 3))
    p.grad = torch.ones(3, 3)
    opt = LARS([p], lr=0.1)
    opt.step()
    assert opt.param_groups[0]["trust_coefficient"] == 0.001
    assert not opt.param_groups[0]["trust_match"]
