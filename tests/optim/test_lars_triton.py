"""The fused Triton path of LARS equals the foreach path (CUDA only, ``-m gpu``)."""

from __future__ import annotations

import pytest
import torch

from lbconvert import LARS


def _random_case(shapes, steps, seed, grad_scales):
    gen = torch.Generator().manual_seed(seed)
    ws = [torch.randn(s, generator=gen) for s in shapes]
    gs = [[torch.randn(s, generator=gen) * sc for s, sc in zip(shapes, grad_scales)]
          for _ in range(steps)]
    return ws, gs


def _run_lars(ws, gs, **kw):
    params = [torch.nn.Parameter(w.clone()) for w in ws]
    opt = LARS([(f"l{i}.weight", p) for i, p in enumerate(params)], **kw)
    for grads in gs:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return params


def test_dispatch_falls_back_without_cuda_or_triton(monkeypatch):
    """On CPU (or with LBCONVERT_LARS_TRITON=0) the fused path is never entered."""
    from lbconvert.optim import lars

    monkeypatch.setenv("LBCONVERT_LARS_TRITON", "0")
    assert lars._triton_enabled() is False
    p = torch.nn.Parameter(torch.randn(3, 3))
    opt = LARS([p], lr=0.1)
    p.grad = torch.randn(3, 3)
    opt.step()  # CPU tensors: foreach path whatever triton says
    assert torch.isfinite(p).all()


def test_fused_kernel_is_opt_in_until_verified_on_hardware(monkeypatch):
    """Never run on a GPU: not the default (docs/gpu-kernels.md); LBCONVERT_LARS_TRITON=1
    opts in."""
    from lbconvert.optim import _lars_triton, lars

    monkeypatch.delenv("LBCONVERT_LARS_TRITON", raising=False)
    monkeypatch.setattr(_lars_triton, "available", lambda: True)
    assert lars.TRITON_VERIFIED_ON_HARDWARE is False and lars._triton_enabled() is False
    monkeypatch.setenv("LBCONVERT_LARS_TRITON", "1")
    assert lars._triton_enabled() is True


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("momentum,nesterov,clip", [(0.9, False, False), (0.0, False, True),
                                                    (0.9, True, True)])
def test_cuda_paths_match_cpu_foreach(momentum, nesterov, clip, monkeypatch):
    """The CUDA path (fused Triton when available) equals the CPU foreach path."""
    shapes = [(64, 3, 7, 7), (64,), (256, 64, 1, 1), (1000, 2048), (1000,), (3, 3)]
    ws, gs = _random_case(shapes, steps=4, seed=6, grad_scales=[1, 1, 1e-3, 1, 1, 1e-5])
    ws[-1] = torch.zeros(3, 3)  # zero-norm case on the device too
    kw = dict(lr=0.5, momentum=momentum, weight_decay=5e-4, nesterov=nesterov, trust_clip=clip)
    cpu = _run_lars([w.float() for w in ws], [[g.float() for g in s] for s in gs], **kw)
    from lbconvert.optim import _lars_triton

    fused_calls = []
    real = _lars_triton.fused_lars
    monkeypatch.setattr(_lars_triton, "fused_lars",
                        lambda *a: fused_calls.append(real(*a)) or fused_calls[-1])
    for triton_flag in ("1", "0"):
        monkeypatch.setenv("LBCONVERT_LARS_TRITON", triton_flag)
        dev = _run_lars([w.float().cuda() for w in ws],
                     [[g.float().cuda() for g in s] for s in gs], **kw)
        for a, b in zip(cpu, dev):
            assert torch.allclose(a, b.cpu(), rtol=1e-5, atol=1e-6), triton_flag
        if triton_flag == "1" and _lars_triton.available():
            assert fused_calls and all(fused_calls)  # the fused kernel really ran
    assert len(fused_calls) == (2 * 4 if _lars_triton.available() else 0)  # 2 groups × 4 steps
