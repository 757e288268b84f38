"""The preflight's hint names flags with values the CLI accepts, and they would settle the
verdict; the time-sized plan of updates."""

from __future__ import annotations

import re

import pytest

from lbconvert.smoke.budget import (
    CONCLUSIVE_ROUNDS,
    END_SHARE,
    MIN_STEPS,
    OVER_BUDGET_LIMIT,
    budget_hint,
)
from lbconvert.smoke.noise import BUDGET_SHARE
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.proxy import Proxy


def _proxy(small: int, large: int) -> Proxy:
    return Proxy(small_batch=small, large_batch=large, ratio=large / small,
                 plan_ratio=large / small, ghost_batch_size=2, plan_ghost_batch_size=128,
                 ghost_scaled=True, steps_per_epoch=10, warmup_steps_plan=0, warmup_steps=0)


@pytest.mark.parametrize("small, large, device", [(2, 128, "cpu"), (16, 1024, "cpu"),
                                                  (64, 4096, "cuda:0")])
def test_every_suggested_value_is_accepted_and_sufficient(small, large, device):
    predicted = 1234.5
    hint = budget_hint(predicted, _proxy(small, large), device)
    time = float(re.search(r"--smoke-time (\d+)", hint).group(1))
    assert time * OVER_BUDGET_LIMIT >= predicted  # the suggested budget admits the run
    # ... and settles it: the verdict's rounds at the predicted rate (9 rounds predicted)
    assert time * (1 - END_SHARE - BUDGET_SHARE) >= CONCLUSIVE_ROUNDS * predicted / (MIN_STEPS + 1)
    batch = re.search(r"--smoke-batch (\d+)", hint)
    if small > 2:
        assert batch is not None and 2 <= int(batch.group(1)) < small
        SmokeOptions(time_budget=time, smoke_batch=int(batch.group(1))).check()
    else:  # nothing smaller than 2 exists: do not suggest lowering it
        assert batch is None
    assert ("--device cuda" in hint) == (not device.startswith("cuda"))
    SmokeOptions(time_budget=time).check()


def _fake(times):
    it = iter(times)
    calls = []

    def timed():
        calls.append(1)
        return next(it)

    return timed, calls


def test_settled_time_waits_out_the_slow_first_steps():
    """The bundled ResNet-20's first CPU steps (ms per sample, measured): slow for three steps,
    not one. The estimate is the steady cost, not the warm-up."""
    from lbconvert.smoke.budget import settled_time

    timed, calls = _fake([0.382, 0.384, 0.167, 0.0089, 0.0093, 0.0090, 5.0])
    assert settled_time(timed) == pytest.approx(0.0089)
    assert len(calls) == 6  # stopped once three steps agreed


def test_settled_time_is_bounded_by_steps_and_seconds():
    from lbconvert.smoke.budget import settled_time

    noisy = [1.0, 0.1] * 20
    timed, calls = _fake(noisy)
    settled_time(timed, max_steps=7)
    assert len(calls) == 7
    timed, calls = _fake(noisy)
    settled_time(timed, max_seconds=1.5)
    assert len(calls) == 3  # over the time cap once `repeats` steps exist


def test_size_steps_fits_the_budget_and_stops_at_the_real_runs_end():
    from lbconvert.smoke.budget import MAX_STEPS, MIN_STEPS, size_steps

    # 10 s left at 0.01 s per update of the three arms (+5%): 952 updates
    assert size_steps(10.0, 0.01, 60.0) == (952, False, None)
    steps, forced, note = size_steps(10.0, 0.01, 60.0, whole=640)
    assert (steps, forced) == (640, False) and "end by update 640" in note
    assert size_steps(10.0, 0.01, 60.0, whole=5000)[0] == 952  # the budget binds first
    steps, forced, note = size_steps(0.01, 0.01, 1.0)
    assert (steps, forced) == (MIN_STEPS, True) and f"fewer than {MIN_STEPS}" in note
    assert size_steps(1e9, 1e-6, 60.0)[0] == MAX_STEPS
    # a real run shorter than MIN_STEPS is covered whole, not padded
    assert size_steps(0.01, 0.01, 1.0, whole=5)[:2] == (5, False)
