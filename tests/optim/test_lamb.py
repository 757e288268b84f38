"""LAMB against an independent plain-Python loop of You et al. 2020 Algorithm 2."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert import LAMB
from lbconvert.errors import LbconvertError

# --- the independent reference: Python floats, one tensor at a time ------------------------


def _norm(xs):
    return math.sqrt(sum(x * x for x in xs))


def ref_lamb(ws, grads_per_step, *, lr, beta1, beta2, eps, wd, adapt, decay, clamp=10.0,
             bias_correction=True):
    """Algorithm 2 on flat lists of floats; ``adapt``/``decay`` are per-tensor flags."""
    ws = [list(w) for w in ws]
    ms = [[0.0] * len(w) for w in ws]
    vs = [[0.0] * len(w) for w in ws]
    for t, grads in enumerate(grads_per_step, start=1):
        for i, (w, g) in enumerate(zip(ws, grads)):
            lam = wd if decay[i] else 0.0
            ms[i] = [beta1 * m + (1 - beta1) * gj for m, gj in zip(ms[i], g)]
            vs[i] = [beta2 * v + (1 - beta2) * gj * gj for v, gj in zip(vs[i], g)]
            c1 = 1 - beta1 ** t if bias_correction else 1.0
            c2 = 1 - beta2 ** t if bias_correction else 1.0
            r = [(m / c1) / (math.sqrt(v / c2) + eps) for m, v in zip(ms[i], vs[i])]
            u = [rj + lam * wj for rj, wj in zip(r, w)]
            wn, un = _norm(w), _norm(u)
            if adapt[i] and wn > 0 and un > 0:
                phi = wn if clamp is None else min(wn, clamp)
                ratio = phi / un
            else:
                ratio = 1.0
            ws[i] = [wj - lr * ratio * uj for wj, uj in zip(w, u)]
    return ws


def _random_case(shapes, steps, seed, w_scales=None):
    gen = torch.Generator().manual_seed(seed)
    scales = w_scales or [1.0] * len(shapes)
    ws = [torch.randn(s, generator=gen, dtype=torch.float64) * sc
          for s, sc in zip(shapes, scales)]
    gs = [[torch.randn(s, generator=gen, dtype=torch.float64) for s in shapes]
          for _ in range(steps)]
    return ws, gs


def _run(ws, gs, **kw):
    params = [torch.nn.Parameter(w.clone()) for w in ws]
    named = [(f"layer{i}.weight" if w.ndim > 1 else f"layer{i}.bias", p)
             for i, (w, p) in enumerate(zip(ws, params))]
    opt = LAMB(named, **kw)
    for grads in gs:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return params, opt


def _expect(ws, gs, flags, **kw):
    return ref_lamb([w.flatten().tolist() for w in ws],
                    [[g.flatten().tolist() for g in step] for step in gs],
                    adapt=flags, decay=flags, **kw)


def _close(params, expect, atol=1e-6):
    for p, e in zip(params, expect):
        err = (p.detach().double().flatten() - torch.tensor(e, dtype=torch.float64)).abs().max()
        assert err <= atol, float(err)


SHAPES = [(6, 3, 3, 3), (6,), (10, 24), (10,), (4, 4)]
# one layer with ‖w‖ ≈ 60 > clamp 10 so that the clip of φ binds, the others below it
W_SCALES = [1.0, 1.0, 4.0, 1.0, 0.5]


@pytest.mark.parametrize("foreach", [True, False])
@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("clamp", [10.0, None])
@pytest.mark.parametrize("exclude", ["default", "none"])
@pytest.mark.parametrize("bias_correction", [True, False])
def test_matches_reference(foreach, wd, clamp, exclude, bias_correction):
    ws, gs = _random_case(SHAPES, steps=4, seed=1, w_scales=W_SCALES)
    kw = dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-6, wd=wd, clamp=clamp,
              bias_correction=bias_correction)
    excl = None if exclude == "default" else False
    params, _ = _run(ws, gs, lr=0.01, betas=(0.9, 0.999), eps=1e-6, weight_decay=wd,
                     clamp_value=clamp, bias_correction=bias_correction, foreach=foreach,
                     exclude_adapt=excl, exclude_decay=excl)
    flags = [w.ndim > 1 or exclude == "none" for w in ws]
    _close(params, _expect(ws, gs, flags, **kw))
    assert not torch.equal(params[0].detach(), ws[0])
    if clamp is not None:  # the case exercises the clip: one layer above it, one below
        norms = [float(w.norm()) for w, f in zip(ws, flags) if f]
        assert any(n > clamp for n in norms) and any(n < clamp for n in norms)


def test_trust_ratio_is_what_makes_it_lamb():
    # guards against a "LAMB" that is AdamW: with adaptation off, the reference differs
    ws, gs = _random_case(SHAPES, steps=2, seed=5, w_scales=W_SCALES)
    params, _ = _run(ws, gs, lr=0.01, weight_decay=0.01)
    flags = [w.ndim > 1 for w in ws]
    adamw = ref_lamb([w.flatten().tolist() for w in ws],
                     [[g.flatten().tolist() for g in step] for step in gs], lr=0.01,
                     beta1=0.9, beta2=0.999, eps=1e-6, wd=0.01, adapt=[False] * len(ws),
                     decay=flags)
    diff = (params[2].detach().flatten() - torch.tensor(adamw[2], dtype=torch.float64)).abs()
    assert diff.max() > 1e-3


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    steps=st.integers(1, 5),
    lr=st.floats(1e-4, 0.5),
    beta1=st.floats(0.0, 0.99),
    beta2=st.floats(0.5, 0.9999),
    eps=st.floats(1e-8, 1e-2),
    wd=st.floats(0.0, 0.1),
    clamp=st.one_of(st.none(), st.floats(0.1, 20.0)),
)
def test_matches_reference_hypothesis(seed, steps, lr, beta1, beta2, eps, wd, clamp):
    ws, gs = _random_case(SHAPES, steps=steps, seed=seed, w_scales=W_SCALES)
    params, _ = _run(ws, gs, lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd,
                     clamp_value=clamp)
    flags = [w.ndim > 1 for w in ws]
    _close(params, _expect(ws, gs, flags, lr=lr, beta1=beta1, beta2=beta2, eps=eps, wd=wd,
                           clamp=clamp))


def test_zero_norms_give_adamw_step_no_nan():
    w = torch.randn(3, 4, dtype=torch.float64)
    g = torch.randn(3, 4, dtype=torch.float64)
    zero = torch.zeros(3, 4, dtype=torch.float64)
    ws = [zero, w, torch.zeros(2, 2, dtype=torch.float64)]
    gs = [[g, zero.clone(), torch.zeros(2, 2, dtype=torch.float64)]]
    params, _ = _run(ws, gs, lr=0.1, weight_decay=0.0, exclude_adapt=False,
                     exclude_decay=False)
    for p in params:
        assert torch.isfinite(p).all()
    # ‖x‖ = 0: the first bias-corrected Adam step is g/(|g| + ε), taken at ratio 1
    assert torch.allclose(params[0].detach(), -0.1 * g / (g.abs() + 1e-6))
    # ‖u‖ = 0 (zero gradient, no decay): nothing moves
    assert torch.equal(params[1].detach(), w)
    _close(params, _expect(ws, gs, [True] * 3, lr=0.1, beta1=0.9, beta2=0.999, eps=1e-6,
                           wd=0.0))


def test_float32_within_1e6_relative():
    # float32 holds ~7 digits: the W_SCALES layer with |w| up to ~16 is held to 1e-6 relative
    ws, gs = _random_case(SHAPES, steps=5, seed=3, w_scales=W_SCALES)
    ws32 = [w.float() for w in ws]
    gs32 = [[g.float() for g in step] for step in gs]
    params, _ = _run(ws32, gs32, lr=1e-3, weight_decay=0.01)
    expect = _expect(ws32, gs32, [w.ndim > 1 for w in ws], lr=1e-3, beta1=0.9, beta2=0.999,
                     eps=1e-6, wd=0.01)
    for p, e in zip(params, expect):
        ref = torch.tensor(e, dtype=torch.float64)
        err = (p.detach().double().flatten() - ref).abs() / ref.abs().clamp(min=1.0)
        assert err.max() <= 1e-6


def test_resume_from_state_dict_is_identical():
    torch.manual_seed(0)

    def make():
        return torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2))

    model = make()
    data = [torch.randn(8, 5) for _ in range(6)]

    def train(m, opt, batches):
        for x in batches:
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            opt.step()

    opt = LAMB(model, lr=0.05, weight_decay=0.01, clamp_value=5.0)
    train(model, opt, data[:3])
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    train(model, opt, data[3:])

    model2 = make()
    model2.load_state_dict(saved_model)
    opt2 = LAMB(model2, lr=1.0)  # hyper-parameters and moments come back from the state dict
    opt2.load_state_dict(saved_opt)
    assert opt2.param_groups[0]["clamp_value"] == 5.0
    assert float(opt2.state[model2[0].weight]["step"]) == 3
    train(model2, opt2, data[3:])
    for p, q in zip(model.parameters(), model2.parameters()):
        assert torch.equal(p, q)


def test_exclusions_follow_the_shared_rule():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    opt = LAMB(model, lr=0.1, weight_decay=0.05)
    by_name = {n: (g["lamb_adapt"], g["weight_decay"]) for g in opt.param_groups
               for n in g["param_names"]}
    assert by_name["0.weight"] == (True, 0.05)
    for name in ("0.bias", "1.weight", "1.bias"):
        assert by_name[name] == (False, 0.0)


def test_params_without_grad_do_not_advance():
    a = torch.nn.Parameter(torch.randn(3, 3))
    b = torch.nn.Parameter(torch.randn(3, 3))
    before = b.detach().clone()
    opt = LAMB([a, b], lr=0.1)
    a.grad = torch.randn(3, 3)
    opt.step()
    assert torch.equal(b.detach(), before)
    assert b not in opt.state and float(opt.state[a]["step"]) == 1


@pytest.mark.parametrize("kwargs, word", [
    (dict(lr=-1.0), "lr"), (dict(betas=(0.9, 1.0)), "betas"), (dict(eps=-1e-8), "eps"),
    (dict(clamp_value=0.0), "clamp_value"), (dict(weight_decay=-0.1), "weight_decay"),
])
def test_invalid_settings_are_refused(kwargs, word):
    with pytest.raises(LbconvertError, match=word):
        LAMB([torch.nn.Parameter(torch.randn(2, 2))], **kwargs)


def test_sparse_grad_is_refused():
    emb = torch.nn.Embedding(10, 4, sparse=True)
    opt = LAMB(emb, lr=0.1)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(LbconvertError, match="sparse"):
        opt.step()


def test_step_reads_no_device_value():
    # a host sync is a device tensor read on the host; the only values step() may read are
    # the CPU step counts (as torch.optim.AdamW without capturable)
    model = torch.nn.Linear(8, 8)
    opt = LAMB(model, lr=0.1, weight_decay=0.01)
    model(torch.randn(2, 8)).sum().backward()
    opt.step()
    read = []
    names = ("item", "tolist", "__float__", "__bool__", "__int__", "cpu", "numpy")
    originals = {n: getattr(torch.Tensor, n) for n in names}

    def spy(name):
        def f(self, *a, **k):
            read.append(id(self))
            return originals[name](self, *a, **k)
        return f

    for n in names:
        setattr(torch.Tensor, n, spy(n))
    try:
        opt.step()
    finally:
        for n, f in originals.items():
            setattr(torch.Tensor, n, f)
    steps = {id(s["step"]) for s in opt.state.values()}
    assert read and set(read) <= steps
