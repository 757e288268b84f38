"""Arms that cannot make their fewest rounds within the budget (+10%) are not started: the
smoke test returns INCONCLUSIVE with a hint inside its budget, and the hint, followed, gives
a conclusive verdict (issue 23, docs/smoke-budget.md).

Nothing here reads the wall clock: every forward pass advances a simulated clock by a cost
per sample, plus a one-time start-up cost on the first pass (library initialisation), so the
run's set-up, the preflight's prediction and the rounds are deterministic by construction.
"""

from __future__ import annotations

import copy
import re

import torch
import torch.nn as nn

from lbconvert.rewrite.surgery import rewrite
from lbconvert.smoke.budget import END_SHARE, MIN_ROUNDS, OVERRUN_LIMIT, min_rounds_overrun
from lbconvert.smoke.diffusion import INCONCLUSIVE
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.run import run_smoke
from tests.helpers import TinyNet, tiny_plan

#: Simulated seconds per sample of a forward pass: a round of the three arms (proxy 4 / 64:
#: 4 + 64 + 64 samples) costs 132 × 0.14 = 18.5 s, so three rounds take 55 s of a 60 s budget
#: and the preflight (9 rounds predicted, 166 s) stays under its 3-budget refusal.
PER_SAMPLE = 0.14
#: The first forward pass of the process: set-up that no step-time measurement sees.
FIRST_CALL = 12.0
BUDGET = 60.0


def test_min_rounds_overrun_is_the_fewest_rounds_against_the_budget_plus_ten_percent():
    budget, elapsed, reserve = 60.0, 10.0, 0.9
    fits = ((1 + OVERRUN_LIMIT) * budget - elapsed - reserve) / MIN_ROUNDS  # exactly at the edge
    assert min_rounds_overrun(elapsed, fits, budget, reserve) is None
    why = min_rounds_overrun(elapsed, fits * 1.01, budget, reserve)
    assert why is not None and f"{MIN_ROUNDS} rounds" in why and "60s budget + 10%" in why
    assert min_rounds_overrun(0.0, 0.0, budget) is None


def _simulated(model: nn.Module, now: list, first_call: float, per_sample: float,
               large_startup: float = 0.0) -> None:
    """Every forward of ``model`` (and of its deep copies: deepcopy shares the plain-function
    hook) advances ``now[0]``; ``large_startup`` is added to the first two passes of 64
    samples (kernels built for the large batch's shape, which the preflight never runs)."""

    def cost(_module, args):
        n = args[0].shape[0]
        now[0] += (first_call if now[1] == 0 else 0.0) + per_sample * n
        now[1] += 1
        if n == 64 and now[2] < 2:
            now[0] += large_startup
            now[2] += 1

    model.register_forward_pre_hook(cost)


def _smoke(budget: float, first_call: float = FIRST_CALL, per_sample: float = PER_SAMPLE,
           large_startup: float = 0.0):
    now = [0.0, 0, 0]  # simulated seconds, forward passes, slow large-batch passes so far
    torch.manual_seed(0)
    model = TinyNet()
    conv = rewrite(copy.deepcopy(model), 4).model
    for m in (model, conv):
        _simulated(m, now, first_call, per_sample, large_startup)
    opts = SmokeOptions(time_budget=budget, device="cpu", clock=lambda: now[0])
    result = run_smoke(model, conv, tiny_plan(warmup_epochs=0.0), opts, input_shape=(3, 6, 6),
                       num_classes=4)
    return result, now[0]


def test_arms_that_cannot_fit_their_fewest_rounds_are_not_started_and_the_hint_settles_it():
    first, end = _smoke(BUDGET)
    assert first.proxy["small_batch"] == 4 and first.proxy["large_batch"] == 64
    # without the check the three rounds alone (55 s) after the set-up would end past 66 s
    assert first.timings["data"] + MIN_ROUNDS * 132 * PER_SAMPLE > (1 + OVERRUN_LIMIT) * BUDGET
    assert all(a.steps == 0 for a in first.arms.values())
    assert end <= (1 + OVERRUN_LIMIT) * BUDGET and first.timings["total"] <= BUDGET
    v = first.verdict
    assert v.level == INCONCLUSIVE and v.reason.startswith("the arms were not started")
    assert first.noise_scale is None and any("arms were not started" in n for n in first.notes)
    hinted = float(re.search(r"--smoke-time (\d+)", v.likely_cause).group(1))
    assert hinted > BUDGET

    second, end = _smoke(hinted)
    assert second.verdict.level != INCONCLUSIVE, second.verdict.reason
    assert {a.steps for a in second.arms.values()} == {second.arms["original"].steps}
    assert second.arms["original"].steps >= 50
    assert end <= (1 + OVERRUN_LIMIT) * hinted
    assert end >= (1 - END_SHARE - 0.1) * hinted  # the budget was used, not left idle


class _Arm:
    """An arm whose every update costs ``cost`` simulated seconds."""

    def __init__(self, now: list[float], cost: float):
        self.now, self.cost, self.planned, self.steps, self.stopped = now, cost, 100, 0, False

    def step(self) -> bool:
        self.now[0] += self.cost
        self.steps += 1
        return True

    def extend(self, planned: int) -> bool:
        return False


def test_the_hard_deadline_stops_even_the_fewest_rounds_but_never_the_first():
    from lbconvert.smoke.budget import interleave

    for hard, want in ((None, 3), (65.0, 2), (1.0, 1)):
        now = [0.0]
        arms = {n: _Arm(now, 10.0) for n in ("a", "b", "c")}
        rounds, cut = interleave(arms, deadline=5.0, clock=lambda: now[0], min_rounds=3,
                                 hard_deadline=hard)
        assert (rounds, cut) == (want, True) and {a.steps for a in arms.values()} == {want}


def test_rounds_slower_than_predicted_stop_within_the_budget_plus_ten_percent():
    # The preflight sees 13.2 s rounds (3 fit easily); the first round pays 30 s of
    # large-batch start-up it never saw, so three rounds would end near 76 s of a 60 s budget.
    result, end = _smoke(BUDGET, first_call=0.0, per_sample=0.1, large_startup=15.0)
    steps = {a.steps for a in result.arms.values()}
    assert len(steps) == 1 and 0 < steps.pop() < MIN_ROUNDS  # started, then stopped short
    assert end <= (1 + OVERRUN_LIMIT) * BUDGET
    assert result.verdict.level == INCONCLUSIVE
    assert re.search(r"--smoke-time (\d+)", result.verdict.likely_cause)
