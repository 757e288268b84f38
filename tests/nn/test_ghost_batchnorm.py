"""GhostBatchNorm against nn.BatchNorm applied ghost batch by ghost batch (Hoffer 2017, Alg. 1)."""

from __future__ import annotations

import copy
import os
import shutil

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert import GhostBatchNorm
from lbconvert.nn.ghost_batchnorm import LazyGhostBatchNorm, ghost_batch_norm
from lbconvert.nn.ghost_chunks import chunk_sizes

BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}



def _pair(c, dims, ghost, momentum=0.1, affine=True, track=True, strategy="loop", dtype=None):
    torch.manual_seed(1)
    bn = BN[dims](c, momentum=momentum, affine=affine, track_running_stats=track, dtype=dtype)
    if affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    if track:
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.num_batches_tracked.fill_(3)
    gbn = GhostBatchNorm.from_batchnorm(copy.deepcopy(bn), ghost)
    gbn.strategy = strategy
    return bn, gbn


def _compare(bn, gbn, x, ghost, tol):
    """Outputs, input/affine grads and buffers of gbn(x) vs bn applied per ghost batch."""
    xr, xg = x.clone().requires_grad_(), x.clone().requires_grad_()
    yr = torch.cat([bn(c) for c in xr.split(chunk_sizes(len(x), ghost, x[0, 0].numel()))])
    yg = gbn(xg)
    gy = torch.randn_like(yr)
    yr.backward(gy)
    yg.backward(gy)
    torch.testing.assert_close(yg, yr, atol=tol, rtol=tol)
    torch.testing.assert_close(xg.grad, xr.grad, atol=tol, rtol=tol)
    if bn.affine:
        torch.testing.assert_close(gbn.weight.grad, bn.weight.grad, atol=tol * 10, rtol=tol)
        torch.testing.assert_close(gbn.bias.grad, bn.bias.grad, atol=tol * 10, rtol=tol)
    if bn.track_running_stats:
        torch.testing.assert_close(gbn.running_mean, bn.running_mean, atol=tol, rtol=tol)
        torch.testing.assert_close(gbn.running_var, bn.running_var, atol=tol, rtol=tol)
        assert gbn.num_batches_tracked.item() == bn.num_batches_tracked.item()


@settings(max_examples=40, deadline=None)
@given(
    dims=st.sampled_from([2, 3, 4, 5]),
    batch=st.integers(2, 19),
    ghost=st.integers(2, 8),
    c=st.integers(1, 5),
    momentum=st.sampled_from([0.1, 0.5, None]),
    affine=st.booleans(),
    track=st.booleans(),
    strategy=st.sampled_from(["loop", "native", "vector", "fold", "triton", "auto"]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_matches_batchnorm_per_ghost_batch(dims, batch, ghost, c, momentum, affine, track,
                                           strategy, dtype):
    spatial = {2: (), 3: (3,), 4: (2, 3), 5: (2, 1, 2)}[dims]
    bn, gbn = _pair(c, dims, ghost, momentum, affine, track, strategy, dtype)
    x = torch.randn(batch, c, *spatial, dtype=dtype) * 2 + 0.5
    _compare(bn, gbn, x, ghost, 1e-5 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize("strategy", ["loop", "native", "vector", "fold"])
def test_remainder_chunk_is_its_own_ghost_batch(strategy):
    bn, gbn = _pair(3, 4, 4, strategy=strategy)
    x = torch.randn(10, 3, 2, 2)  # ghost batches of 4, 4 and 2
    _compare(bn, gbn, x, 4, 1e-5)
    y = gbn(x)
    tail = y[8:].transpose(0, 1).reshape(3, -1)
    # the remainder chunk is normalized with its own statistics: mean β, biased var γ²·v/(v+ε)
    torch.testing.assert_close(tail.mean(1), gbn.bias.detach(), atol=1e-5, rtol=0)


def test_each_ghost_batch_normalized():
    gbn = GhostBatchNorm(4, 8, affine=False)
    x = torch.randn(32, 4, 3, 3) * 5 + torch.arange(32.0)[:, None, None, None]
    y = gbn(x).view(4, 8, 4, 9)
    torch.testing.assert_close(y.mean((1, 3)), torch.zeros(4, 4), atol=1e-5, rtol=0)
    var = y.var((1, 3), unbiased=False)
    torch.testing.assert_close(var, torch.ones(4, 4), atol=1e-3, rtol=0)


def test_batch_not_larger_than_ghost_is_batchnorm():
    bn, gbn = _pair(6, 4, 128)
    x = torch.randn(16, 6, 3, 3)
    torch.testing.assert_close(gbn(x), bn(x), atol=0, rtol=0)
    assert torch.equal(gbn.running_var, bn.running_var)


def test_momentum_none_counts_ghost_batches():
    bn, gbn = _pair(3, 2, 2, momentum=None, strategy="fold")
    x = torch.randn(8, 3)
    gbn(x)
    for c in x.split(2):
        bn(c)
    assert gbn.num_batches_tracked.item() == 3 + 4
    torch.testing.assert_close(gbn.running_mean, bn.running_mean)


def test_eval_is_batchnorm_with_running_stats():
    bn, gbn = _pair(5, 4, 2)
    bn.eval(), gbn.eval()
    x = torch.randn(9, 5, 4, 4)
    torch.testing.assert_close(gbn(x), bn(x), atol=0, rtol=0)


def test_eval_without_running_stats_uses_whole_batch_like_batchnorm():
    bn, gbn = _pair(5, 4, 2, track=False)
    bn.eval(), gbn.eval()
    x = torch.randn(9, 5, 4, 4)
    torch.testing.assert_close(gbn(x), bn(x), atol=0, rtol=0)


@pytest.mark.parametrize("strategy", ["loop", "native", "vector", "fold", "auto"])
def test_one_sample_remainder_trains_where_batchnorm_does(strategy):
    """Issue 21: Linear → BatchNorm1d at ghost 4 on a batch of 9 crashed on the 1-sample
    remainder; it is merged into the last ghost batch (4 + 5), never an error."""
    bn, gbn = _pair(3, 2, 4, strategy=strategy)
    _compare(bn, gbn, torch.randn(9, 3), 4, 1e-5)
    assert gbn.num_batches_tracked.item() == 3 + 2
    # a single sample is rejected by BatchNorm itself, and so by GhostBatchNorm
    for module in (nn.BatchNorm1d(3), GhostBatchNorm(3, 4, strategy=strategy)):
        with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
            module(torch.randn(1, 3))


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="ghost_batch_size"):
        GhostBatchNorm(3, 0)
    with pytest.raises(ValueError, match="strategy"):
        GhostBatchNorm(3, 2, strategy="magic")
    with pytest.raises(ValueError, match="2D"):
        GhostBatchNorm(3, 2)(torch.randn(3))


def test_state_dict_keys_and_strict_load_into_batchnorm():
    bn = nn.BatchNorm2d(7)
    gbn = GhostBatchNorm.from_batchnorm(bn, 4)
    assert list(gbn.state_dict()) == list(nn.BatchNorm2d(7).state_dict()) == [
        "weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    gbn(torch.randn(12, 7, 2, 2))
    fresh = nn.BatchNorm2d(7)
    fresh.load_state_dict(gbn.state_dict(), strict=True)
    assert torch.equal(fresh.running_mean, gbn.running_mean)
    assert gbn.weight is bn.weight and gbn.running_var is bn.running_var


def test_channels_last_and_autocast_keep_exact_running_stats():
    bn, gbn = _pair(4, 4, 4, strategy="fold")
    x = torch.randn(12, 4, 5, 5).to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = gbn(x)
        ref = torch.cat([bn(c) for c in x.split(4)])
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y.float(), ref.float(), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(gbn.running_var, bn.running_var, atol=1e-6, rtol=1e-6)


def test_lazy_materializes_into_ghost_batchnorm():
    lazy = LazyGhostBatchNorm(2)
    y = lazy(torch.randn(6, 3, 2, 2))
    assert type(lazy) is GhostBatchNorm and lazy.num_features == 3
    assert y.shape == (6, 3, 2, 2)


def test_fx_trace_keeps_ghost_batchnorm_as_one_call():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), GhostBatchNorm(4, 2))
    gm = torch.fx.symbolic_trace(model)
    calls = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert calls == [ghost_batch_norm]
    x = torch.randn(6, 3, 2, 2)
    ref = copy.deepcopy(model)
    torch.testing.assert_close(gm(x), ref(x))


def test_torch_compile_inductor_matches_batchnorm_per_ghost_batch():
    """Compiled by Inductor (torch.compile's default backend, generated C++ on the CPU), not
    only traced by Dynamo: outputs, input gradients and running statistics equal BatchNorm
    applied ghost batch by ghost batch."""
    pytest.importorskip("torch._inductor")
    if shutil.which(os.environ.get("CXX", "c++")) is None and shutil.which("g++") is None:
        pytest.skip("Inductor needs a C++ compiler on the CPU; none found")
    torch._dynamo.reset()
    gbn = GhostBatchNorm(3, 2)
    bn = nn.BatchNorm2d(3)
    x = torch.randn(6, 3, 2, 2, requires_grad=True)
    xr = x.detach().clone().requires_grad_(True)
    y = torch.compile(gbn)(x)
    ref = torch.cat([bn(c) for c in xr.split(2)])
    torch.testing.assert_close(y, ref)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(gbn.running_mean, bn.running_mean)
    torch.testing.assert_close(gbn.running_var, bn.running_var)


def test_onnx_export_is_plain_batchnormalization(tmp_path):
    onnx = pytest.importorskip("onnx")
    # BN first: after a Conv the exporter would fold it into the Conv weights.
    model = nn.Sequential(GhostBatchNorm(3, 2), nn.ReLU()).eval()
    path = tmp_path / "gbn.onnx"
    try:
        torch.onnx.export(model, (torch.randn(2, 3, 4, 4),), str(path), dynamo=False)
    except Exception as exc:  # pragma: no cover - exporter missing pieces
        pytest.skip(f"onnx export unavailable: {exc}")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "BatchNormalization" in ops and "Concat" not in ops


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", ["loop", "fold", "triton", "auto"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_cuda_strategies_match_batchnorm(strategy, momentum):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    bn = nn.BatchNorm2d(16, momentum=momentum).cuda()
    gbn = GhostBatchNorm.from_batchnorm(copy.deepcopy(bn), 8)
    gbn.strategy = strategy
    _compare(bn, gbn, torch.randn(70, 16, 9, 9, device="cuda"), 8, 1e-5)


@pytest.mark.parametrize("channels_last", [False, True])
def test_native_strategy_equals_loop_incl_channels_last(channels_last):
    torch.manual_seed(0)
    x = torch.randn(22, 3, 5, 4, dtype=torch.float64)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    grad = torch.randn(22, 3, 5, 4, dtype=torch.float64).transpose(2, 3).contiguous() \
        .transpose(2, 3)  # a non-contiguous upstream gradient
    results = []
    for strategy in ("loop", "native"):
        gbn = GhostBatchNorm(3, ghost_batch_size=8, strategy=strategy).double()
        torch.manual_seed(1)  # the same affine parameters for both strategies
        with torch.no_grad():
            gbn.weight.uniform_(0.5, 1.5)
            gbn.bias.uniform_(-1, 1)
        xi = x.clone().requires_grad_()
        y = gbn(xi)
        y.backward(grad)
        results.append((y, xi.grad, gbn.weight.grad, gbn.bias.grad, gbn.running_mean,
                        gbn.running_var, gbn.num_batches_tracked))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


class _FakeCudaInput:
    """What pick_strategy reads of a contiguous CUDA input, without a GPU."""

    device = torch.device("cuda")
    shape = (4096, 64, 8, 8)

    def element_size(self):
        return 4

    def __getitem__(self, idx):
        return torch.empty(8, 8)


def test_auto_on_cuda_never_picks_a_kernel_not_verified_on_hardware(monkeypatch):
    """The one-launch Triton kernels have run only under the interpreter: ``auto`` must not
    pick them on CUDA even where they apply (docs/gpu-kernels.md); strategy="triton" stays."""
    from lbconvert.nn import _gbn_triton
    from lbconvert.nn import ghost_batchnorm as gbn

    monkeypatch.setattr(_gbn_triton, "available", lambda x: True)
    assert "triton" not in gbn.CUDA_VERIFIED and "triton" in gbn.STRATEGIES
    for ghost in (2, 32, 128, 4096):
        assert gbn.pick_strategy(_FakeCudaInput(), ghost) in gbn.CUDA_VERIFIED
    # once verified on hardware it would be picked where it applies
    monkeypatch.setattr(gbn, "CUDA_VERIFIED", gbn.CUDA_VERIFIED | {"triton"})
    assert gbn.pick_strategy(_FakeCudaInput(), 32) == "triton"
