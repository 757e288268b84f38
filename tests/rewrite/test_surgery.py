"""rewrite(): which BatchNorms become GhostBatchNorm, by which route, and what is left alone."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fixtures.models.bn_models import Containers, DataDependent, Functional, Lazy, WithSyncAndFrozen
from lbconvert import GhostBatchNorm, LbconvertError
from lbconvert.nn.ghost_batchnorm import LazyGhostBatchNorm
from lbconvert.rewrite.surgery import GhostFunctional, rewrite


def _rows(result):
    return {r.path: r for r in result.rows}


def test_swap_keeps_user_class_and_input_untouched():
    model = Containers()
    before = copy.deepcopy(model.state_dict())
    result = rewrite(model, 4)
    assert type(result.model) is Containers and result.route == "swap"
    assert isinstance(model.stem[1], nn.BatchNorm2d)  # the input is not modified
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    rows = _rows(result)
    assert set(rows) == {"stem.1", "heads.a.1", "heads.b", "block.inner.1", "shared"}
    assert {r.route for r in rows.values()} == {"swap"}
    assert isinstance(result.model.heads["a"][1], GhostBatchNorm)
    assert isinstance(result.model.block.inner[1], GhostBatchNorm)
    assert result.model.shared.ghost_batch_size == 4
    assert list(result.model.state_dict()) == list(model.state_dict())
    assert result.converted == 5 and result.skipped == 0 and result.left_alone == 0
    assert result.to_dict()["rows"][0]["path"] == "stem.1"


def test_skip_globs_match_paths_and_parents():
    result = rewrite(Containers(), 4, skip=["heads", "block.*"])
    rows = _rows(result)
    assert rows["heads.a.1"].route == rows["heads.b"].route == "skipped"
    assert rows["block.inner.1"].route == "skipped"
    assert isinstance(result.model.heads["b"], nn.BatchNorm1d)
    assert result.skipped == 3 and result.converted == 2


def test_data_dependent_model_falls_back_to_swap():
    result = rewrite(DataDependent(), 2)
    assert result.route.startswith("swap (fx trace failed:") and result.fx_error
    assert type(result.model) is DataDependent
    assert isinstance(result.model.bn, GhostBatchNorm)
    assert any("torch.fx could not trace the model" in n for n in result.notes)


def test_functional_batch_norm_goes_through_fx_and_keeps_keys():
    model = Functional()
    result = rewrite(model, 2)
    assert result.route == "fx" and isinstance(result.model, torch.fx.GraphModule)
    rows = [r for r in result.rows if r.route == "fx"]
    assert len(rows) == 1 and rows[0].old_type == "F.batch_norm"
    assert sorted(result.model.state_dict()) == sorted(model.state_dict())
    fn = [m for m in result.model.modules() if isinstance(m, GhostFunctional)]
    assert len(fn) == 1
    node = next(n for n in result.model.graph.nodes if n.op == "call_module"
                and isinstance(result.model.get_submodule(n.target), GhostFunctional))
    assert node.meta["lbconvert"]["kind"] == "functional"
    # Train: each ghost batch of 2 normalized alone, so its per-channel mean is the bias.
    x = torch.randn(6, 3, 4, 4)
    conv = result.model.conv(x)
    y = result.model.ghost_bn_fn_0(conv, torch.zeros(8), torch.ones(8),
                                   result.model.weight, result.model.bias)
    chunk_means = y.view(3, 2, 8, 16).mean((1, 3))
    torch.testing.assert_close(chunk_means, result.model.bias.detach().expand(3, 8),
                               atol=1e-5, rtol=0)
    # Eval follows model.eval(): running statistics, like the original.
    result.model.eval(), model.eval()
    torch.testing.assert_close(result.model(x), model(x), atol=1e-6, rtol=0)


def test_lazy_batchnorm_converts_lazily():
    result = rewrite(Lazy(), 2)
    assert isinstance(result.model.bn, LazyGhostBatchNorm)
    result.model(torch.randn(4, 3, 2, 2))
    assert type(result.model.bn) is GhostBatchNorm and result.model.bn.num_features == 5


def test_syncbn_converted_or_kept_and_frozen_left_alone():
    result = rewrite(WithSyncAndFrozen(), 8)
    rows = _rows(result)
    assert rows["sync"].route == "swap" and "cross-device" in rows["sync"].reason
    assert rows["frozen"].route == "left" and type(result.model.frozen).__name__ == (
        "FrozenBatchNorm2d")
    assert "not called" in rows["sync"].reason
    kept = rewrite(WithSyncAndFrozen(), 8, keep_syncbn=True)
    assert isinstance(kept.model.sync, nn.SyncBatchNorm) and _rows(kept)["sync"].route == "left"


def test_rejects_bad_ghost_size():
    with pytest.raises(LbconvertError, match="ghost"):
        rewrite(Containers(), 0)


def test_detection_backbone_keeps_frozen_batchnorm():
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None)
    result = rewrite(backbone, 32)
    assert result.converted == 0 and result.left_alone > 0
    assert {r.old_type for r in result.rows} == {"FrozenBatchNorm2d"}


def test_convnext_has_no_batchnorm():
    from torchvision.models import convnext_tiny

    result = rewrite(convnext_tiny(weights=None), 32)
    assert result.rows == [] and result.converted == 0 and result.route == "swap"


def test_timm_batchnorm_act_keeps_its_activation():
    timm = pytest.importorskip("timm")
    from timm.layers import BatchNormAct2d

    model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=10)
    result = rewrite(model, 2)
    bn = result.model.bn1
    assert isinstance(bn, BatchNormAct2d) and isinstance(bn, GhostBatchNorm)
    assert isinstance(bn.act, nn.SiLU)
    ref = copy.deepcopy(model.bn1).train()
    x = torch.randn(6, bn.num_features, 3, 3)
    y = bn.train()(x)
    torch.testing.assert_close(y, torch.cat([ref(c) for c in x.split(2)]))
    assert (y.min() >= -0.2785)  # SiLU's minimum: the activation is still applied
    assert list(result.model.state_dict()) == list(model.state_dict())
    resnet = rewrite(timm.create_model("resnet18", pretrained=False), 32)
    assert resnet.converted == 20


class _StdConv(nn.Conv2d):
    """Weight standardization with F.batch_norm, as timm's ScaledStdConv2d (NF-ResNets)."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0.0, eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


def test_weight_standardization_is_not_a_batchnorm_site():
    model = nn.Sequential(_StdConv(3, 4, 3), nn.ReLU(), _StdConv(4, 4, 3))
    result = rewrite(model, 2)
    assert result.converted == 0 and result.left_alone == 2
    assert all("weight standardization" in r.reason for r in result.rows)
    x = torch.randn(4, 3, 8, 8)
    for mode in (True, False):  # the same computation in training and in eval
        with torch.no_grad():
            assert torch.equal(result.model.train(mode)(x), model.train(mode)(x))
