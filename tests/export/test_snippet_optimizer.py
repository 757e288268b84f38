"""train_snippet.py carries the plan's optimizer choice and settings (issue 26): the snippet
re-plans with the same ``optimizer=`` and says what ``make_optimizer`` builds."""

from __future__ import annotations

import pytest
import torch.nn as nn

from lbconvert.export.checkpoint import train_snippet
from lbconvert.optim.factory import make_optimizer
from tests.helpers import make_result


def _with(result, **plan):
    for k, v in plan.items():
        setattr(result.plan, k, v)
    return result


@pytest.mark.parametrize("choice, expect", [
    ("lamb", "lbconvert.LAMB(lr="), ("lars", "lbconvert.LARS(lr="), ("keep", "the config's sgd"),
])
def test_snippet_passes_the_optimizer_and_names_it(choice, expect):
    result = _with(make_result(), optimizer_new=choice, betas=[0.9, 0.95], eps=1e-6)
    source = train_snippet(result)
    compile(source, "train_snippet.py", "exec")
    assert f"optimizer={choice!r})" in source and expect in source


def test_snippet_settings_are_what_make_optimizer_builds():
    result = _with(make_result(), optimizer_new="lamb", betas=[0.9, 0.95], eps=1e-7)
    source = train_snippet(result)
    opt = make_optimizer(nn.Linear(3, 3), result.plan)
    g = opt.param_groups[0]
    assert f"betas={tuple(g['betas'])}" in source and f"eps={g['eps']:g}" in source
    assert type(opt).__name__ == "LAMB"


def test_snippet_of_a_bn_free_model_states_no_ghost_batch():
    from lbconvert.rewrite.surgery import SurgeryResult

    result = _with(make_result(), optimizer_new="lamb", betas=[0.9, 0.999], eps=1e-6)
    assert "ghost batch" in train_snippet(result)
    result.surgery = SurgeryResult(model=nn.Linear(2, 2), rows=[])
    source = train_snippet(result)
    assert "ghost batch" not in source and "no BatchNorm converted, optimizer lamb" in source
