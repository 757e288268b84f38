"""verify(): the zoo converts and verifies; broken conversions are caught with numbers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.models as tvm
from rich.console import Console

from fixtures.models.bn_models import Containers, DataDependent, Functional, Lazy
from lbconvert import GhostBatchNorm, LbconvertError
from lbconvert.cli.render_surgery import render_surgery, render_verification
from lbconvert.rewrite.surgery import rewrite
from lbconvert.rewrite.verify import verify

# ResNets run at 16x16 (layer4 is then 1x1), the rest at the smallest size they accept.
ZOO = [
    ("resnet18", {}), ("resnet50", {}), ("resnext50_32x4d", {}), ("wide_resnet50_2", {}),
    ("mobilenet_v2", {}), ("mobilenet_v3_small", {}), ("efficientnet_b0", {}),
    ("regnet_y_400mf", {}), ("densenet121", {}), ("shufflenet_v2_x0_5", {}), ("mnasnet0_5", {}),
    ("googlenet", {"aux_logits": True, "init_weights": False}),
]


def _check_ok(model, shape, ghost=32, **kw):
    lazy = nn.parameter.UninitializedTensorMixin
    before = {k: v.clone() for k, v in model.state_dict().items() if not isinstance(v, lazy)}
    result = rewrite(model, ghost)
    v = verify(model, result.model, shape, ghost_batch_size=ghost, **kw)
    failed = [c for c in v.checks if not c.passed]
    assert v.passed, failed
    assert [c.name for c in v.checks] == ["state_dict_keys", "load_strict", "eval_outputs",
                                          "train_ghost_equals_batch", "train_ghost_chunked"]
    assert all(torch.equal(before[k], t) for k, t in model.state_dict().items() if k in before)
    return result, v


@pytest.mark.parametrize("name,kwargs", ZOO, ids=[z[0] for z in ZOO])
def test_torchvision_zoo_converts_and_verifies(name, kwargs):
    torch.manual_seed(0)
    model = getattr(tvm, name)(weights=None, **kwargs)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    size = 16 if "res" in name else 32
    result, v = _check_ok(model, (3, size, size))
    assert n_bn > 0 and result.converted == n_bn and result.route == "swap"
    assert v.sites == n_bn and "of" in v.checks[-1].detail


@pytest.mark.slow
def test_inception_v3_with_aux_verifies():
    # The aux head needs 17x17 features in training, i.e. 299x299 inputs.
    model = tvm.inception_v3(weights=None, aux_logits=True, init_weights=False)
    result, _ = _check_ok(model, (3, 299, 299))
    assert result.converted == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("factory,shape", [(Containers, (3, 4, 4)), (DataDependent, (3, 4, 4)),
                                           (Functional, (3, 4, 4)), (Lazy, (3, 2, 2))])
def test_special_models_verify(factory, shape):
    torch.manual_seed(0)
    model = factory()
    _check_ok(model, shape, ghost=3, batch=8)  # ghost batches of 3, 3 and 2
    if factory is Lazy:
        assert isinstance(model.bn, nn.LazyBatchNorm2d)  # verify did not materialize the input


def test_timm_batchnorm_act_verifies():
    timm = pytest.importorskip("timm")
    _check_ok(timm.create_model("efficientnet_b0", pretrained=False, num_classes=10), (3, 32, 32))


class _ForgetsRunningStats(GhostBatchNorm):
    """The reshape bug the issue warns about: trains fine, never updates running stats."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        g = self.ghost_batch_size
        return torch.cat([F.batch_norm(c, None, None, self.weight, self.bias, True, 0.1, self.eps)
                          for c in x.split(g)])


def test_catches_running_stats_bug():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    broken = rewrite(model, 2).model
    broken[1].__class__ = _ForgetsRunningStats
    v = verify(model, broken, (3, 4, 4), ghost_batch_size=2)
    checks = {c.name: c for c in v.checks}
    assert not v.passed and not checks["train_ghost_chunked"].passed
    assert checks["train_ghost_chunked"].value > 1e-3
    assert checks["eval_outputs"].passed


def test_catches_changed_keys_and_eval_outputs():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    other = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Sequential(nn.BatchNorm2d(4)))
    v = verify(model, other, (3, 4, 4), ghost_batch_size=2)
    checks = {c.name: c for c in v.checks}
    assert checks["state_dict_keys"].value == 10 and not checks["load_strict"].passed
    assert not checks["eval_outputs"].passed and checks["eval_outputs"].value > 1e-3
    assert v.to_dict()["passed"] is False


def test_bad_input_shape_is_a_user_error():
    with pytest.raises(LbconvertError, match="input shape"):
        verify(nn.BatchNorm1d(3), nn.BatchNorm1d(3), (0,), ghost_batch_size=2)


def test_renderers_print_tables():
    model = Containers()
    result = rewrite(model, 2, skip=["heads.b"])
    v = verify(model, result.model, (3, 4, 4), ghost_batch_size=2)
    console = Console(record=True, width=200)
    render_surgery(result, console)
    render_verification(v, console)
    text = console.export_text()
    assert "stem.1" in text and "GhostBatchNorm" in text and "skipped" in text
    assert "converted 4 · skipped 1" in text and "train_ghost_chunked" in text
    assert "verified" in text


def test_detection_model_needing_targets_verifies_per_site():
    from fixtures.models.detection_like import DetectionLike

    model = DetectionLike(head_bn=True)
    result, v = _check_ok(model, (3, 8, 8), ghost=2)
    assert result.converted == 1 and result.left_alone == 2  # two FrozenBatchNorm2d stay
    eq, chunked = v.checks[3], v.checks[4]
    assert "per site" in eq.detail and "targets should not be none" in eq.detail
    assert "1 of 1 site(s)" in chunked.detail and "eval forward" in chunked.detail
    nothing, v = _check_ok(DetectionLike(head_bn=False), (3, 8, 8), ghost=2)
    assert nothing.converted == 0


def test_per_site_fallback_still_catches_a_wrong_site():
    from fixtures.models.detection_like import DetectionLike

    model = DetectionLike(head_bn=True)
    result = rewrite(model, 2)
    result.model.head[1].eps = 0.5  # a different normalization than the original's
    v = verify(model, result.model, (3, 8, 8), ghost_batch_size=2)
    failed = {c.name: c for c in v.checks if not c.passed}
    assert {"train_ghost_equals_batch", "train_ghost_chunked"} <= set(failed)
    assert failed["train_ghost_chunked"].value > 1e-3


def test_a_converted_model_that_crashes_in_training_is_not_excused():
    # The original trains on inputs alone, so a crash of the converted model's training
    # forward is the conversion's fault: no per-site fallback, the check fails.
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    result = rewrite(model, 2)

    def boom(*args, **kwargs):
        raise RuntimeError("broken ghost batch norm")

    result.model[1].forward = boom
    v = verify(model, result.model, (3, 6, 6), ghost_batch_size=2)
    eq = v.checks[3]
    assert not eq.passed and "broken ghost batch norm" in eq.detail


def test_empty_outputs_compare_equal():
    class NoBoxes(nn.Module):  # an untrained detector: no detections above threshold
        def __init__(self):
            super().__init__()
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x):
            y = self.bn(x)
            return [{"boxes": y.new_zeros((0, 4)), "scores": y.mean((1, 2, 3))}]

    _check_ok(NoBoxes(), (3, 4, 4), ghost=2)


def test_batchnorm_over_tokens_folded_into_the_batch():
    class TokenBN(nn.Module):  # LeViT's LinearNorm: BatchNorm1d over (batch × tokens) rows
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 5)
            self.bn = nn.BatchNorm1d(5)

        def forward(self, x):  # x: (B, tokens=6... as channels 3 x 6 features)
            y = self.fc(x)
            return self.bn(y.flatten(0, 1)).reshape_as(y)

    result, v = _check_ok(TokenBN(), (3, 6), ghost=2)
    assert "12 rows for 4 samples" in v.checks[4].detail
