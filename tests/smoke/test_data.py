"""Smoke-test data pools: built-in sources, user factories, the seeded index stream."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from lbconvert.errors import LbconvertError
from lbconvert.smoke.data import IndexStream, make_pool


def _pool(data="synthetic", seed=0, n=64, shape=(3, 4, 4), classes=5, **kw):
    return make_pool(
        data,
        input_shape=shape,
        num_classes=classes,
        output_dim=classes,
        pool_size=n,
        seed=seed,
        device="cpu",
        **kw,
    )


def test_synthetic_is_seeded_and_shaped():
    a, b, c = _pool(seed=1), _pool(seed=1), _pool(seed=2)
    assert a.x.shape == (64, 3, 4, 4) and a.y.shape == (64,) and a.y.dtype == torch.long
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert 0 <= int(a.y.min()) and int(a.y.max()) < 5 and a.classification


def test_structured_synthetic_has_class_signal():
    p = _pool("synthetic-structured", n=2000)
    means = torch.stack([p.x[p.y == k].mean(0) for k in range(5)])
    # Class means differ by O(1) (the templates); pure noise would differ by ~1/sqrt(400).
    spread = (means[:, None] - means[None]).flatten(2).norm(dim=-1)
    assert spread[~torch.eye(5, dtype=torch.bool)].min() > 3.0


def test_regression_targets_when_no_classes():
    p = make_pool(
        "synthetic",
        input_shape=(6,),
        num_classes=None,
        output_dim=3,
        pool_size=10,
        seed=0,
        device="cpu",
    )
    assert p.y.shape == (10, 3) and p.y.is_floating_point() and not p.classification


def test_torchvision_fakedata_never_downloads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = _pool("torchvision:FakeData", n=16, shape=(3, 8, 8), classes=4)
    assert p.x.shape == (16, 3, 8, 8) and int(p.y.max()) < 4
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LbconvertError, match="image input shape"):
        _pool("torchvision:FakeData", shape=(7,))


def test_factory_from_file_dataset_loader_and_tuple(tmp_path):
    f = tmp_path / "mydata.py"
    f.write_text(
        textwrap.dedent("""
        import torch
        from torch.utils.data import DataLoader, TensorDataset
        X = torch.arange(40, dtype=torch.float32).reshape(20, 2)
        Y = torch.arange(20) % 3
        def dataset():
            return TensorDataset(X, Y)
        def loader():
            return DataLoader(TensorDataset(X, Y), batch_size=6)
        def tensors():
            return X, Y
        def nothing():
            return 42
    """)
    )
    ref_x = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    for fn in ("dataset", "loader", "tensors"):
        p = _pool(f"{f}:{fn}", n=15, shape=(2,), classes=3)
        assert torch.equal(p.x, ref_x[:15]) and torch.equal(p.y, torch.arange(15) % 3)
        assert p.classification and p.source.endswith(fn)
    with pytest.raises(LbconvertError, match="returned int"):
        _pool(f"{f}:nothing", shape=(2,), classes=3)
    with pytest.raises(LbconvertError, match="no callable 'missing'"):
        _pool(f"{f}:missing", shape=(2,), classes=3)
    with pytest.raises(LbconvertError, match="≥ num_classes"):
        _pool(f"{f}:tensors", shape=(2,), classes=2)


def test_factory_from_module(tmp_path, monkeypatch):
    (tmp_path / "smoke_pkg_data.py").write_text(
        "import torch\ndef make():\n    return torch.ones(5, 3), torch.zeros(5, 2)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        p = _pool("smoke_pkg_data:make", shape=(3,), classes=None)
        assert p.x.shape == (5, 3) and not p.classification
    finally:
        sys.modules.pop("smoke_pkg_data", None)
    with pytest.raises(LbconvertError, match="importing"):
        _pool("no_such_module_xyz:make")


def test_unknown_source_is_a_user_error():
    with pytest.raises(LbconvertError, match="unknown --data source"):
        _pool("imagenet")


def test_index_stream_is_seeded_epochs_of_permutations():
    s1, s2 = IndexStream(10, 3, "cpu"), IndexStream(10, 3, "cpu")
    a = torch.cat([s1.take(4) for _ in range(5)])  # 20 = two epochs
    b = torch.cat([s2.take(7), s2.take(13)])
    assert torch.equal(a, b)
    assert sorted(a[:10].tolist()) == list(range(10)) and sorted(a[10:].tolist()) == list(range(10))
    assert not torch.equal(a, torch.cat([IndexStream(10, 4, "cpu").take(20)]))
