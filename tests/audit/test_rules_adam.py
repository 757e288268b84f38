"""The audit knows Adam-family runs (issue 26): LB002's fix follows the Adam SDE rule or
LAMB's √M, LB008 cites LAMB's paper, LB006 is skipped for a model without BatchNorm (known
from its checkpoints: no running_mean buffer)."""

from __future__ import annotations

import math

import pytest
import torch

from lbconvert.audit.analyze.findings import Baseline
from lbconvert.audit.read.checkpoints import read_distance
from tests.helpers import audit_run as run
from tests.helpers import check_rule as check

BASE = Baseline(batch_size=256, source="b", lr=1e-3, epochs=300, updates=150000)


def test_lb002_adam_fix_is_the_sde_rule():
    f = check("LB002", run(lr=1e-3, optimizer="adamw"), BASE).findings[0]  # M = 16, ×1
    assert "Malladi" in f.fix and f"{1e-3 * math.sqrt(16):g}" in f.fix and "ε ÷ √16" in f.fix
    assert "Goyal" not in f.fix
    f = check("LB002", run(lr=1e-3, optimizer="lamb"), BASE).findings[0]
    assert "You et al. 2020" in f.fix and "0.004" in f.fix
    # SGD keeps the Hoffer/Goyal fix
    assert "Goyal" in check("LB002", run(lr=1e-3, optimizer="sgd"), BASE).findings[0].fix
    # √M-scaled Adam is inside the band: no finding
    assert not check("LB002", run(lr=1e-3 * 4, optimizer="adamw"), BASE).findings


def test_lb008_lamb_cites_lamb_paper():
    f = check("LB008", run(optimizer="lamb", warmup_epochs=0.0)).findings[0]
    assert "You et al. 2020" in f.message and "LAMB" in f.message
    assert not check("LB008", run(optimizer="lamb", warmup_epochs=5.0)).findings


def test_lb006_skipped_without_batchnorm():
    big = dict(batch=4096, devices=8, grad_accum=2)  # 256 per device
    assert check("LB006", run(**big)).findings
    assert check("LB006", run(**big, has_batchnorm=True)).findings
    r = check("LB006", run(**big, has_batchnorm=False))
    assert not r.findings and "no BatchNorm" in r.skipped


@pytest.mark.parametrize("norm, has_bn", [(torch.nn.LayerNorm, False),
                                          (torch.nn.BatchNorm1d, True)])
def test_checkpoints_tell_whether_the_model_has_batchnorm(tmp_path, norm, has_bn):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), norm(4))
    for step in (0, 10):
        torch.save({"state_dict": model.state_dict(), "global_step": step},
                   tmp_path / f"step_{step}.pt")
        with torch.no_grad():
            model[0].weight.add_(0.1)
    h = read_distance(tmp_path)
    assert h.get("has_batchnorm") is has_bn
    assert len(h.raw_series["weight_distance"].values) == 2
