"""Remainders (issue 21): GhostBatchNorm trains on every batch size BatchNorm trains on, in every
strategy, and equals nn.BatchNorm applied ghost batch by ghost batch with the same chunking
(float64); and a compiled GhostBatchNorm's graph does not grow with N/ghost (issue 25)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert import GhostBatchNorm
from lbconvert.nn.ghost_chunks import chunk_sizes, ghost_split

CPU_STRATEGIES = ["loop", "native", "vector", "fold", "auto"]
SPATIAL = {"(N,C)": (), "(N,C,L)": (3,), "(N,C,H,W)": (2, 2)}


@pytest.mark.parametrize(("n", "ghost", "per_sample", "sizes"), [
    (9, 4, 1, [4, 5]),        # the issue-21 crash: a 1-sample remainder is merged
    (9, 4, 6, [4, 5]),        # a remainder under half a ghost batch is merged too
    (10, 4, 1, [4, 4, 2]),    # half a ghost batch stays its own ghost batch
    (5, 4, 1, [5]),           # under 1.5 ghost batches: one BatchNorm over the batch
    (4, 4, 1, [4]),
    (3, 4, 1, [3]),
    (129, 128, 1, [129]),
    (200, 128, 1, [128, 72]),
    (255, 128, 1, [128, 127]),
    (5, 2, 1, [2, 3]),        # ghost 2, (N, C): a 1-sample remainder would be rejected
    (5, 2, 4, [2, 2, 1]),     # ... but with 4 values per channel it is a ghost batch
    (4, 1, 1, [2, 2]),        # ghost 1 on (N, C) cannot normalize: pairs
    (3, 1, 4, [1, 1, 1]),     # ghost 1 with spatial extent is per-sample normalization
])
def test_chunk_sizes(n, ghost, per_sample, sizes):
    assert chunk_sizes(n, ghost, per_sample) == sizes
    full, size, tail = ghost_split(n, ghost, per_sample)
    assert full * size + tail == n


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 600), ghost=st.integers(1, 130), per_sample=st.integers(1, 9))
def test_chunk_sizes_properties(n, ghost, per_sample):
    sizes = chunk_sizes(n, ghost, per_sample)
    size = max(ghost, 2) if per_sample == 1 else ghost
    assert sum(sizes) == n
    assert all(s == size for s in sizes[:-1])
    # every ghost batch is normalizable when the batch is, and within half a ghost of `size`
    if n * per_sample > 1:
        assert all(s * per_sample > 1 for s in sizes)
    if len(sizes) > 1:
        assert -(-size // 2) <= sizes[-1] <= size + max(-(-size // 2) - 1, 1)


def _bn_reference(bn, x, sizes):
    """nn.BatchNorm applied to each ghost batch in turn (the independent reference)."""
    return torch.cat([bn(chunk) for chunk in x.split(sizes)])


def _check_every_batch_size(strategy, ghost, spatial, momentum):
    for n in range(1, 3 * ghost + 2):
        torch.manual_seed(n)
        x = torch.randn(n, 3, *spatial, dtype=torch.float64) * 2 + 0.5
        bn = (nn.BatchNorm2d if len(spatial) == 2 else nn.BatchNorm1d)(
            3, momentum=momentum, dtype=torch.float64)
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        gbn = GhostBatchNorm.from_batchnorm(copy.deepcopy(bn), ghost)
        gbn.strategy = strategy
        xr, xg = x.clone().requires_grad_(), x.clone().requires_grad_()
        trains = n * x[0, 0].numel() > 1  # BatchNorm's own rule
        if not trains:
            with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
                copy.deepcopy(bn)(x)
            with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
                gbn(xg)
            continue
        sizes = chunk_sizes(n, ghost, x[0, 0].numel())
        ref, out = _bn_reference(bn, xr, sizes), gbn(xg)
        if n <= ghost:  # plain BatchNorm, bit for bit
            assert torch.equal(out, ref), (strategy, ghost, n)
        gy = torch.randn_like(ref)
        ref.backward(gy)
        out.backward(gy)
        msg = f"{strategy} ghost {ghost} batch {n} {tuple(x.shape)}"
        for got, want in ((out, ref), (xg.grad, xr.grad), (gbn.weight.grad, bn.weight.grad),
                          (gbn.bias.grad, bn.bias.grad), (gbn.running_mean, bn.running_mean),
                          (gbn.running_var, bn.running_var)):
            torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10, msg=msg)
        assert gbn.num_batches_tracked.item() == len(sizes) == bn.num_batches_tracked.item()


@pytest.mark.parametrize("spatial", list(SPATIAL.values()), ids=list(SPATIAL))
@pytest.mark.parametrize("ghost", [4, 12])
@pytest.mark.parametrize("strategy", CPU_STRATEGIES)
def test_every_batch_size_up_to_three_ghosts(strategy, ghost, spatial):
    _check_every_batch_size(strategy, ghost, spatial, momentum=0.1)


@settings(max_examples=30, deadline=None)
@given(strategy=st.sampled_from(CPU_STRATEGIES), ghost=st.integers(1, 9),
       spatial=st.sampled_from(list(SPATIAL.values())),
       momentum=st.sampled_from([0.1, 0.7, None]))
def test_every_batch_size_property(strategy, ghost, spatial, momentum):
    _check_every_batch_size(strategy, ghost, spatial, momentum)


def _compiled_node_count(batch, spatial):
    """Nodes of the fx graph(s) Dynamo captures for one training forward of GhostBatchNorm."""
    torch._dynamo.reset()
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    gbn = GhostBatchNorm(3, 4)
    bn = nn.BatchNorm1d(3) if len(spatial) < 2 else nn.BatchNorm2d(3)
    x = torch.randn(batch, 3, *spatial)
    y = torch.compile(gbn, backend=backend, dynamic=False)(x)
    ref = torch.cat([bn(c) for c in x.split(4)])
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gbn.running_var, bn.running_var, atol=1e-5, rtol=1e-5)
    assert gbn.num_batches_tracked.item() == batch // 4
    return sum(len(g.graph.nodes) for g in graphs), len(graphs)


@pytest.mark.parametrize("spatial", [(), (2, 2)], ids=["(N,C)", "(N,C,H,W)"])
def test_compiled_graph_does_not_grow_with_ghost_batches(spatial):
    pytest.importorskip("torch._dynamo")
    small = _compiled_node_count(4 * 4, spatial)
    large = _compiled_node_count(4 * 2048, spatial)
    assert large == small, (small, large)
    assert small[0] < 100  # not one BatchNorm per ghost batch
