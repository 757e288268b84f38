"""Adam-family smoke runs get INCONCLUSIVE, not an unvalidated PASS/FAIL (issue 26)."""

from __future__ import annotations

import math

import pytest

from lbconvert.smoke.diffusion import FAIL, INCONCLUSIVE, PASS
from lbconvert.smoke.verdict import decide
from tests.helpers import curve_arm as _arm
from tests.helpers import fit_arm as _fit_arm

WINDOW = (100, 1000)


def _arms(orig_opt: str, conv_opt: str):
    orig = _fit_arm(_arm("original", lambda t: 1 + math.log(t), optimizer=orig_opt), WINDOW)
    naive = _fit_arm(_arm("naive", lambda t: 0.9 + 0.8 * math.log(t), optimizer=orig_opt),
                     WINDOW)
    conv = _fit_arm(_arm("converted", lambda t: 1.02 * (1 + math.log(t)), optimizer=conv_opt),
                    WINDOW)
    return orig, naive, conv


@pytest.mark.parametrize("orig_opt, conv_opt", [
    ("adamw (β (0.9, 0.999), ε 1e-08, wd 0.05)", "lamb (β (0.9, 0.999), ε 1e-06, wd 0.05)"),
    ("adam (β (0.9, 0.999), ε 1e-08, wd 0)", "adam (β (0.6, 0.996), ε 5e-09, wd 0)"),
])
def test_adam_family_is_inconclusive_with_the_reason(orig_opt, conv_opt):
    v = decide(*_arms(orig_opt, conv_opt), WINDOW)
    assert v.level == INCONCLUSIVE
    assert "Adam-family" in v.reason and "SGD and LARS" in v.reason


def test_sgd_lars_still_judged_and_adam_divergence_still_fails():
    assert decide(*_arms("sgd (momentum 0.9, wd 0.0005)", "lars (η 0.001, wd 0.0005)"),
                  WINDOW).level == PASS
    orig, naive, conv = _arms("adamw (wd 0.05)", "lamb (wd 0.05)")
    conv.diverged = True
    assert decide(orig, naive, conv, WINDOW).level == FAIL
