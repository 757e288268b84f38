"""Every normalization site is accounted for: found (independent count) = converted + skipped +
left alone, over zoo, timm, scripted and functional models; a gap fails verify and the headline."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from fixtures.models.bn_models import DataDependentFunctional, Functional
from fixtures.models.scripted_blocks import ScriptedBlocksNet
from lbconvert.nn.ghost_batchnorm import GhostBatchNorm
from lbconvert.rewrite import surgery as surgery_mod
from lbconvert.rewrite.census import count_sites
from lbconvert.rewrite.surgery import rewrite
from lbconvert.rewrite.verify import account_check, verify

pytestmark = pytest.mark.filterwarnings("ignore:.*torch.jit.*deprecated:FutureWarning")


def _eager_bn(model: nn.Module) -> int:
    """Ground truth for eager models, by type (neither the census's nor the surgery's rule)."""
    from torchvision.ops.misc import FrozenBatchNorm2d

    return sum(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, FrozenBatchNorm2d))
               for m in model.modules())


def _tv(name):
    import torchvision

    return getattr(torchvision.models, name)(weights=None)


def _fpn_frozen():
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    return resnet_fpn_backbone(backbone_name="resnet18", weights=None,
                               norm_layer=FrozenBatchNorm2d, trainable_layers=3)


def _timm_bnact():
    timm = pytest.importorskip("timm")
    return timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10)


def _scripted_resnet():
    return torch.jit.script(_tv("resnet18"))


# (factory, sites expected, of which converted): expected numbers come from the eager model's
# types, or are counted by hand in the fixture's source.
CASES = {
    "resnet18": (lambda: _tv("resnet18"), 20, 20),
    "mobilenet_v3_small": (lambda: _tv("mobilenet_v3_small"), None, None),
    "fpn_frozen_backbone": (_fpn_frozen, 20, 0),
    "timm_bnact": (_timm_bnact, None, None),
    "scripted_blocks": (ScriptedBlocksNet, 6, 6),  # stem 1, block 0: 2, block 1: 3
    "fully_scripted_resnet18": (_scripted_resnet, 20, 20),
    "functional": (Functional, 2, 2),  # one BatchNorm2d, one F.batch_norm call
    "untraceable_functional": (DataDependentFunctional, 2, 1),  # F.batch_norm left, listed
}


@pytest.mark.parametrize("name", list(CASES))
def test_found_equals_converted_plus_skipped_plus_left(name):
    factory, expected, converted = CASES[name]
    model = factory()
    if expected is None:  # eager zoo / timm model: count its BatchNorm types
        if name == "timm_bnact":
            from timm.layers import BatchNormAct2d

            expected = sum(isinstance(m, (nn.BatchNorm2d, BatchNormAct2d))
                           for m in model.modules())
            assert any(isinstance(m, BatchNormAct2d) for m in model.modules())
        else:
            expected = _eager_bn(model)
        converted = expected
    found = count_sites(model)
    result = rewrite(model, 4)
    assert found.total == expected
    assert len(result.rows) == result.converted + result.skipped + result.left_alone == expected
    assert result.converted == converted
    value, detail = account_check(found, result.rows)
    assert value == 0, detail
    assert f"{expected} site(s) found" in detail


def test_frozen_and_untraceable_sites_say_why():
    frozen = rewrite(_fpn_frozen(), 4)
    assert {r.route for r in frozen.rows} == {"left"}
    assert all("fixed statistics" in r.reason for r in frozen.rows)
    result = rewrite(DataDependentFunctional(), 4)
    (fn,) = [r for r in result.rows if r.kind == "functional"]
    assert fn.route == "left" and "torch.fx could not trace" in fn.reason
    assert "bn_models.py:" in fn.reason  # file:line of the call


def test_scripted_blocks_are_converted_and_verified():
    model = ScriptedBlocksNet()
    result = rewrite(model, 2)
    scripted = [r for r in result.rows if "TorchScript" in r.old_type]
    assert len(scripted) == 5 and all(r.route == "swap" for r in scripted)
    assert all("rebuilt as an eager module" in r.reason for r in scripted)
    assert isinstance(model.blocks[0], torch.jit.ScriptModule)  # the input is untouched
    ver = verify(model, result.model, (3, 16, 16), ghost_batch_size=2, surgery=result)
    assert ver.passed, [(c.name, c.detail) for c in ver.checks if not c.passed]
    assert [c.name for c in ver.checks][-1] == "sites_accounted"


def test_fully_scripted_model_becomes_eager_and_verifies():
    import torchvision

    model = _scripted_resnet()
    result = rewrite(model, 2)
    assert type(result.model) is torchvision.models.resnet.ResNet
    ver = verify(model, result.model, (3, 32, 32), ghost_batch_size=2, surgery=result)
    assert ver.passed, [(c.name, c.detail) for c in ver.checks if not c.passed]


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x))


def test_scripted_block_without_a_python_class_is_left_alone_with_the_reason():
    _Block.__module__ = "module_that_does_not_exist"  # as if saved elsewhere and loaded here
    buf = io.BytesIO()
    torch.jit.save(torch.jit.script(_Block()), buf)
    buf.seek(0)
    model = nn.Sequential(nn.BatchNorm2d(3), torch.jit.load(buf))
    result = rewrite(model, 2)
    rows = {r.path: r for r in result.rows}
    assert rows["0"].route == "swap"
    assert rows["1.bn"].route == "left"
    assert "cannot be imported" in rows["1.bn"].reason and "`1`" in rows["1.bn"].reason
    assert any("kept as they are" in n for n in result.notes)
    assert account_check(count_sites(model), result.rows)[0] == 0
    ver = verify(model, result.model, (3, 4, 4), ghost_batch_size=2, surgery=result)
    assert ver.passed, [(c.name, c.detail) for c in ver.checks if not c.passed]


def _old_rule(m):  # the surgery before this check: blind to TorchScript BatchNorms
    return isinstance(m, torch.nn.modules.batchnorm._BatchNorm)


def test_unaccounted_sites_fail_verify_and_the_headline(monkeypatch):
    import lbconvert
    from lbconvert.report.build import overall_verdict

    monkeypatch.setattr(surgery_mod, "_is_bn_like", _old_rule)
    result = lbconvert.convert(ScriptedBlocksNet(), target_batch=512, input_shape=(3, 16, 16))
    assert result.surgery.converted == 1  # the bug the issue reported
    check = result.verification.checks[-1]
    assert check.name == "sites_accounted" and not check.passed and check.value == 5
    assert "blocks.0.residual.1" in check.detail
    verdict = overall_verdict(result, None)
    assert verdict["level"] == "FAIL" and not verdict["ok"]
    assert "sites_accounted" in verdict["checks"][0]["summary"]


def test_a_dropped_row_fails_the_account():
    model = Functional()
    result = rewrite(model, 2)
    found = count_sites(model)
    assert account_check(found, result.rows)[0] == 0
    assert account_check(found, result.rows[:-1])[0] == 1  # the F.batch_norm row
    assert account_check(found, result.rows[1:])[0] == 1  # a module row
    assert account_check(found, result.rows + result.rows[:1])[0] == 1  # an extra row


def test_failed_fx_post_condition_is_reported_as_such(monkeypatch):
    def broken(self, graph_module):
        raise RuntimeError("F.batch_norm at batch_norm was not converted")

    monkeypatch.setattr(surgery_mod.FunctionalBatchNormPass, "ensures", broken)
    model = Functional()
    result = rewrite(model, 2)
    what = ("fx rewrite failed its post-condition: RuntimeError: F.batch_norm at batch_norm was"
            " not converted (FunctionalBatchNormPass.ensures)")
    assert result.fx_error == what
    assert result.route == f"swap ({what})"
    assert "trace" not in result.route
    (note,) = [n for n in result.notes if n.startswith(what)]
    assert note.startswith(f"{what}; fell back to module swapping: BatchNorm modules were "
                           "swapped, the 1 F.batch_norm call(s) of the traced forward were not "
                           "converted")
    # the fallback itself: the user's class with GhostBatchNorm swapped in, not a GraphModule
    assert type(result.model) is Functional
    assert isinstance(result.model.bn, GhostBatchNorm)
    (fn,) = [r for r in result.rows if r.kind == "functional"]
    assert fn.route == "left" and fn.reason.endswith(what)
    assert "fell back to module swapping" in fn.reason
    assert account_check(count_sites(model), result.rows)[0] == 0


def test_failed_fx_pre_condition_is_reported_as_such(monkeypatch):
    def broken(self, graph_module):
        raise RuntimeError("graph does not lint")

    monkeypatch.setattr(surgery_mod.FunctionalBatchNormPass, "requires", broken)
    result = rewrite(Functional(), 2)
    assert result.route == ("swap (fx rewrite failed its pre-condition: RuntimeError: graph does"
                            " not lint (FunctionalBatchNormPass.requires))")
    assert type(result.model) is Functional
    assert any("; fell back to module swapping: " in n for n in result.notes)


def test_no_verify_is_not_a_pass():
    import lbconvert
    from lbconvert.report.build import overall_verdict

    result = lbconvert.convert(ScriptedBlocksNet(), target_batch=512, input_shape=(3, 16, 16),
                               verify=False)
    verdict = overall_verdict(result, None)
    assert verdict["level"] == "INCONCLUSIVE"
    assert "not verified" in verdict["headline"]


def test_cli_lists_every_scripted_site(tmp_path):
    from typer.testing import CliRunner

    from lbconvert.cli import app

    out = tmp_path / "out"
    res = CliRunner().invoke(app, [
        str(Path(__file__).parents[2] / "fixtures/models/scripted_blocks.py"),
        "--target-batch", "512", "--no-smoke", "--out", str(out)],
        prog_name="lbconvert", terminal_width=200)
    assert res.exit_code == 0, res.output[-3000:]
    for path in ("stem.1", "blocks.0.residual.1", "blocks.0.residual.4",
                 "blocks.1.residual.1", "blocks.1.residual.4", "blocks.1.shortcut.1"):
        assert path in res.output
    assert "6 site(s): converted 6 · skipped 0 · left alone 0" in res.output
    report = json.loads((out / "report.json").read_text())
    assert report["surgery"]["sites"] == 6 and report["surgery"]["converted"] == 6
    (check,) = [c for c in report["verification"]["checks"] if c["name"] == "sites_accounted"]
    assert check["passed"] and "6 site(s) found" in check["detail"]
    assert "6 normalization site(s) found" in (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    assert "6 normalization site(s) found" in html and "sites_accounted" in html
