"""One exclusion rule, applied separately to LARS adaptation and weight decay."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from lbconvert.errors import LbconvertError
from lbconvert.optim.param_groups import default_exclude, param_groups


class Net(nn.Module):
    def __init__(self, hook=False):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 4))
        self.fc = nn.Linear(4, 2)
        self._hook = hook

    def no_weight_decay(self):
        return {"pos_embed"} if self._hook else set()


def _where(groups):
    """name -> (lars_adapt, weight_decay)."""
    return {n: (g["lars_adapt"], g["weight_decay"]) for g in groups for n in g["param_names"]}


def test_default_rule_excludes_1d_and_hook_names():
    got = _where(param_groups(Net(hook=True), weight_decay=1e-4))
    assert got == {
        "conv.weight": (True, 1e-4), "conv.bias": (False, 0.0),
        "bn.weight": (False, 0.0), "bn.bias": (False, 0.0),
        "pos_embed": (False, 0.0),
        "fc.weight": (True, 1e-4), "fc.bias": (False, 0.0),
    }
    assert _where(param_groups(Net(hook=False), weight_decay=1e-4))["pos_embed"] == (True, 1e-4)


def test_excluding_from_adaptation_keeps_weight_decay():
    # the peers' bug: excluding fc from the trust ratio silently dropped its weight decay
    got = _where(param_groups(Net(), weight_decay=5e-4, exclude_adapt=["fc.*"]))
    assert got["fc.weight"] == (False, 5e-4)
    assert got["fc.bias"] == (False, 0.0)  # decay follows its own (default) rule
    assert got["conv.weight"] == (True, 5e-4)
    assert got["bn.weight"] == (True, 0.0)  # decay still follows the default rule


def test_excluding_from_decay_keeps_adaptation():
    got = _where(param_groups(Net(), weight_decay=5e-4, exclude_decay=True))
    assert got["conv.weight"] == (True, 0.0)
    assert got["bn.weight"] == (False, 0.0)


def test_callable_spec_extends_default():
    def rule(name, p):
        return default_exclude(name, p) or name.startswith("fc.")

    got = _where(param_groups(Net(), weight_decay=1e-4, exclude_adapt=rule, exclude_decay=False))
    assert got["fc.weight"] == (False, 1e-4)
    assert got["conv.weight"] == (True, 1e-4)
    assert got["bn.bias"] == (False, 1e-4)


def test_every_parameter_once_and_frozen_left_out():
    net = Net()
    net.fc.weight.requires_grad_(False)
    groups = param_groups(list(net.named_parameters()) * 2, weight_decay=0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(net.parameters())) - 1
    assert all(g["params"] for g in groups)


def test_bad_specs_raise():
    with pytest.raises(LbconvertError):
        param_groups(Net(), weight_decay=0.1, exclude_adapt=[1, 2])
    with pytest.raises(LbconvertError):
        param_groups([torch.zeros(2)], weight_decay=0.1)
