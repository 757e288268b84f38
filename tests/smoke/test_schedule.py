"""The smoke budget on simulated time: arms interleaved get the same updates whatever their
start-up costs, the whole test (measurement and noise scale included) keeps to its budget,
and the INCONCLUSIVE hint's --smoke-time, followed, gives a conclusive verdict (issue 23).

Nothing here reads the wall clock: a simulated clock advances by a fixed cost per sample of
every forward pass, plus a start-up cost for the first passes of each batch shape (oneDNN
builds kernels shape by shape on a CPU), so every number is deterministic by construction.
"""

from __future__ import annotations

import copy
import math
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from lbconvert.plan.plan import Plan
from lbconvert.rewrite.surgery import rewrite
from lbconvert.smoke.budget import END_SHARE, interleave, settle_budget
from lbconvert.smoke.diffusion import INCONCLUSIVE
from lbconvert.smoke.noise import BUDGET_SHARE
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.run import run_smoke


class FakeArm:
    """An arm whose update costs ``cost`` simulated seconds, plus ``startup`` on its first."""

    def __init__(self, clock: list[float], cost: float, startup: float = 0.0,
                 planned: int = 10_000):
        self.clock, self.cost, self.startup, self.planned = clock, cost, startup, planned
        self.steps, self.stopped = 0, False

    def step(self) -> bool:
        self.clock[0] += self.cost + (self.startup if self.steps == 0 else 0.0)
        self.steps += 1
        self.stopped = self.steps >= self.planned
        return not self.stopped

    def extend(self, planned: int) -> bool:
        if self.steps < self.planned or planned <= self.planned:
            return False
        self.planned, self.stopped = planned, False
        return True


def test_interleaved_arms_make_the_same_updates_whatever_their_startup():
    now = [0.0]
    # issue 23's shape: the small-batch arm is cheap per update but pays a long start-up
    arms = {"original": FakeArm(now, 0.01, startup=4.0), "naive": FakeArm(now, 0.3),
            "converted": FakeArm(now, 0.35)}
    rounds, cut = interleave(arms, deadline=50.0, clock=lambda: now[0])
    assert cut and {a.steps for a in arms.values()} == {rounds}
    # the next round would have crossed the deadline: stopped before it, not after
    assert now[0] <= 50.0 and now[0] + 0.66 > 50.0
    assert rounds == 1 + math.floor((50.0 - 4.66) / 0.66)


def test_interleave_extends_a_short_plan_to_the_deadline_and_keeps_a_minimum():
    now = [0.0]
    arms = {n: FakeArm(now, 1.0, planned=12) for n in ("a", "b", "c")}
    assert interleave(arms, deadline=None, clock=lambda: now[0]) == (12, False)
    now = [0.0]
    # planned from a measurement inflated by start-up: 12 updates where 30 rounds fit
    arms = {n: FakeArm(now, 1.0, planned=12) for n in ("a", "b", "c")}
    rounds, _ = interleave(arms, deadline=90.0, clock=lambda: now[0])
    assert rounds == 29 and {a.steps for a in arms.values()} == {29} and now[0] <= 90.0
    now = [0.0]
    arms = {n: FakeArm(now, 1.0, planned=12) for n in ("a", "b", "c")}
    assert interleave(arms, deadline=90.0, clock=lambda: now[0], max_rounds=20)[0] == 20
    now = [0.0]
    arms = {n: FakeArm(now, 1.0) for n in ("a", "b", "c")}
    rounds, cut = interleave(arms, deadline=1.0, clock=lambda: now[0], min_rounds=5)
    assert (rounds, cut) == (5, True)  # a curve needs points whatever the deadline


def test_settle_budget_covers_the_rounds_at_the_rate_seen():
    # 20 s of set-up, 0.5 s per round, 60 rounds wanted, 13% of the budget elsewhere
    got = settle_budget(20.0, 0.5, 60, 0.13)
    need = (20.0 + 61 * 0.5) / 0.87
    assert got >= need and got % 10 == 0 and got < need * 1.1 + 10


class TinyNet(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


PER_SAMPLE, PER_CALL, STARTUP, STARTUP_CALLS = 0.01, 0.005, 0.3, 2
#: Once per process (library and thread-pool initialisation): a fixed cost that no step-time
#: measurement sees, so a hint sized from step times alone falls short by it.
FIRST_CALL = 60.0


def _simulated(model: nn.Module, now: list[float], seen: dict[int, int]) -> None:
    """Make every forward of ``model`` (and of its deep copies: the hook is a plain function,
    which deepcopy shares) advance ``now``."""

    def cost(_module, args):
        n = args[0].shape[0]
        now[0] += FIRST_CALL if not seen else 0.0
        seen[n] = seen.get(n, 0) + 1
        now[0] += PER_CALL + PER_SAMPLE * n + (STARTUP if seen[n] <= STARTUP_CALLS else 0.0)

    model.register_forward_pre_hook(cost)


def _plan() -> Plan:
    return Plan(source_batch=4, target_batch=64, ratio=16.0, rule="sqrt", regime="adapt",
                epochs_factor=16.0, lr_old=0.05, lr_new=0.2, lr_multiplier=4.0,
                warmup_epochs=0.0, warmup_start_factor=0.25, ghost_batch_size=4,
                optimizer_old="sgd", momentum=0.9, weight_decay=1e-4, epochs_old=10,
                epochs_new=160)


def _smoke(budget: float):
    now, seen = [0.0], {}
    torch.manual_seed(0)
    model = TinyNet()
    conv = rewrite(copy.deepcopy(model), 4).model
    _simulated(model, now, seen)
    _simulated(conv, now, seen)
    opts = SmokeOptions(time_budget=budget, device="cpu", progress=False,
                        clock=lambda: now[0])
    result = run_smoke(model, conv, _plan(), opts, input_shape=(3, 6, 6), num_classes=4)
    return result, now[0]


def _check_budget(result, budget: float, end: float) -> None:
    steps = {a.steps for a in result.arms.values()}
    assert len(steps) == 1  # every arm the same number of updates
    assert end <= 1.1 * budget and result.timings["total"] <= 1.1 * budget
    assert result.timings["noise_scale"] <= BUDGET_SHARE * budget + 1e-9


def test_the_hint_followed_gives_a_conclusive_verdict_within_budget():
    budget = 80.0
    first, end = _smoke(budget)
    _check_budget(first, budget, end)
    assert first.verdict.level == INCONCLUSIVE and "updates per arm" in first.verdict.reason
    hinted = float(re.search(r"--smoke-time (\d+)", first.verdict.likely_cause).group(1))
    assert hinted > budget
    second, end = _smoke(hinted)
    _check_budget(second, hinted, end)
    assert second.verdict.level != INCONCLUSIVE, second.verdict.reason
    assert second.arms["original"].steps >= 50
    assert second.noise_scale is not None  # measured within its share, not dropped
    # the budget is used, not left idle: the arms ran until the deadline
    assert end >= (1 - END_SHARE - BUDGET_SHARE) * hinted
