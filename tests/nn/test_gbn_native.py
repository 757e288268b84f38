"""The CPU "native" GhostBatchNorm strategy against nn.BatchNorm applied ghost batch by ghost
batch in float64: cache blocks inside a ghost batch, the shifted one-pass variance when
|mean| >> std, both backward routes, channels_last and the remainder ghost batch."""

from __future__ import annotations

import pytest
import torch

from lbconvert import GhostBatchNorm
from lbconvert.nn import _gbn_native
from lbconvert.nn.ghost_chunks import chunk_sizes


def _reference(x, ghost, gbn):
    bn = torch.nn.BatchNorm2d(x.shape[1], momentum=gbn.momentum, dtype=torch.float64)
    with torch.no_grad():
        bn.weight.copy_(gbn.weight)
        bn.bias.copy_(gbn.bias)
        bn.running_mean.copy_(gbn.running_mean)
        bn.running_var.copy_(gbn.running_var)
    xr = x.double().requires_grad_()
    sizes = chunk_sizes(x.shape[0], ghost, x[0, 0].numel())
    return bn, xr, torch.cat([bn(chunk) for chunk in xr.split(sizes)])


@pytest.mark.parametrize("offset", [0.0, 300.0])
@pytest.mark.parametrize("block_bytes", [_gbn_native.BLOCK_BYTES, 200])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("temp_bytes", [_gbn_native.TEMP_BYTES, 0])
def test_native_matches_float64_batchnorm_per_ghost(monkeypatch, offset, block_bytes,
                                                    channels_last, temp_bytes):
    monkeypatch.setattr(_gbn_native, "BLOCK_BYTES", block_bytes)  # 200 B: 1 sample a block
    monkeypatch.setattr(_gbn_native, "TEMP_BYTES", temp_bytes)  # 0: the blockwise backward
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(13, 4, 5, 3, generator=gen) * 0.5 + offset
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    gbn = GhostBatchNorm(4, ghost_batch_size=4, momentum=None, strategy="native")
    with torch.no_grad():
        gbn.weight.uniform_(0.5, 1.5, generator=gen)
        gbn.bias.uniform_(-1, 1, generator=gen)
        gbn.running_mean.fill_(offset)
    bn, xr, ref = _reference(x, 4, gbn)
    xg = x.clone().requires_grad_()
    y = gbn(xg)
    gy = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
    ref.backward(gy)
    y.backward(gy.float())
    # float32 holds x (and the mean) to |x|*6e-8: outputs can differ by that much, scaled by
    # invstd (2 here), whatever the algorithm.
    atol = 2e-5 + offset * 3e-7
    torch.testing.assert_close(y.double(), ref, atol=atol, rtol=1e-5)
    torch.testing.assert_close(xg.grad.double(), xr.grad, atol=atol, rtol=1e-5)
    # Σ dy·x̂ over 195 values per channel: the per-value error above, summed.
    torch.testing.assert_close(gbn.weight.grad.double(), bn.weight.grad, atol=atol * 50,
                               rtol=1e-5)
    torch.testing.assert_close(gbn.bias.grad.double(), bn.bias.grad, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(gbn.running_mean.double(), bn.running_mean, atol=atol,
                               rtol=1e-6)
    # The variance is what a shift-free one-pass formula would get wrong at offset 300:
    # E[x²] - E[x]² loses about (300/0.5)² * 6e-8 = 2% of it in float32.
    torch.testing.assert_close(gbn.running_var.double(), bn.running_var, atol=1e-5, rtol=1e-4)
    assert gbn.num_batches_tracked.item() == 3  # 4 + 4 + 5: the remainder sample is merged
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)


def test_usable_rules_out_what_the_kernels_do_not_cover():
    x = torch.randn(9, 3, 4, 4)
    assert _gbn_native.usable(x, None)
    assert not _gbn_native.usable(x.half(), None)
    assert not _gbn_native.usable(x, torch.ones(3, dtype=torch.float64))
    assert not _gbn_native.usable(x.transpose(2, 3), None)
