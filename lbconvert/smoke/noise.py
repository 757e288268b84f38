"""The smoke test's gradient noise scale B_simple (McCandlish et al. 2018) at the original weights.

B_simple = tr Σ / |G|² estimates the critical batch: beyond it a larger batch buys few extra
steps. The smoke test measures it at the original (small-batch) run's weights at two points —
before training (``init``) and at the end of the original arm — from the smoke's own data
stream and loss, in train mode as training sees it: ``k`` batches of b_s (the proxy small
batch, each with the original arm's micro-batching) and their accumulation (B_big = k·b_s,
b_l when the budget allows) at the same weights, in ``rounds`` rounds for a standard error
(:func:`lbconvert.measure.noise_probe.probe_noise_scale`, the estimator the monitor uses too).

The probe runs on a copy of the model, so the arms' weights and BatchNorm statistics are
untouched; dropout draws from a forked, seeded RNG. Cost: 2 × rounds × k forward/backward
passes of b_s samples (no optimizer step), sized to at most :data:`BUDGET_SHARE` of the smoke
time budget at the original arm's measured step time (:func:`size_probe`), taken from the
budget and reported.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, Callable

from lbconvert.smoke.data import BUILTINS

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from lbconvert.smoke.arms import ArmSetup

#: Points measured: before training and at the end of the original arm.
POINTS = 2
#: Rounds per point (the probe's standard error needs ≥ 3, the fewest the budget may leave).
ROUNDS, MIN_ROUNDS = 4, 3
#: b_s batches per round: b_l/b_s within [MIN_K, MAX_K], fewer (down to MIN_K) to fit the budget.
MIN_K, MAX_K = 4, 64
#: Most of the smoke time budget the measurement may take.
BUDGET_SHARE = 0.1

METHOD = ("McCandlish et al. 2018, appendix A: unbiased |G|² and tr Σ from the gradients of "
          "k batches of b_small and their mean (B_big = k·b_small) at the same weights, "
          "mean over rounds; standard error by the delta method")


@dataclasses.dataclass
class ProbeSize:
    """How large each measurement is: ``k`` batches of b_s per round, ``rounds`` rounds."""

    k: int
    rounds: int
    note: str | None = None

    @property
    def passes(self) -> int:
        """Forward/backward passes of b_s the measurement costs (all points)."""
        return POINTS * self.rounds * self.k


def size_probe(setup: ArmSetup, step_time: float, time_budget: float) -> ProbeSize:
    """k = b_l/b_s (B_big = b_l) within [MIN_K, MAX_K] and the pool (fresh samples within a
    round), halved — then rounds lowered to MIN_ROUNDS — until the passes fit
    :data:`BUDGET_SHARE` of ``time_budget`` at ``step_time`` per pass (the original arm's)."""
    p = setup.proxy
    k = min(MAX_K, max(MIN_K, round(p.large_batch / p.small_batch)))
    k = max(2, min(k, len(setup.pool) // p.small_batch))
    size = ProbeSize(k, ROUNDS)
    allowed = BUDGET_SHARE * time_budget / step_time if step_time > 0 else float("inf")
    while size.passes > allowed and size.k > MIN_K:
        size.k = max(MIN_K, size.k // 2)
    if size.passes > allowed:
        size.rounds = MIN_ROUNDS
    if size.k * p.small_batch < p.large_batch:
        size.note = (f"noise scale measured with B_big = {size.k * p.small_batch} (not the "
                     f"proxy large batch {p.large_batch}) to keep it within "
                     f"{BUDGET_SHARE:.0%} of the smoke time")
    return size


def resize(size: ProbeSize, setup: ArmSetup, spent: float, passes_done: int,
           time_budget: float, points_left: int = 1) -> ProbeSize:
    """``size`` for the points still to measure, at the cost per pass the first point took
    (the step time the budget measured can be well below it): halve k, then lower the
    rounds, until the total fits :data:`BUDGET_SHARE` of ``time_budget``."""
    if passes_done <= 0 or spent <= 0:
        return size
    per_pass = spent / passes_done
    allowed = max(0.0, BUDGET_SHARE * time_budget - spent) / per_pass / max(1, points_left)
    new = ProbeSize(size.k, size.rounds, size.note)
    while new.rounds * new.k > allowed and new.k > MIN_K:
        new.k = max(MIN_K, new.k // 2)
    if new.rounds * new.k > allowed:
        new.rounds = MIN_ROUNDS
    if (new.k, new.rounds) != (size.k, size.rounds):
        new.note = (f"noise scale after training measured with B_big = "
                    f"{new.k * setup.proxy.small_batch} in {new.rounds} rounds: the first "
                    f"measurement took {spent:.2g}s ({per_pass:.2g}s per pass), more than the "
                    "step time predicted")
    return new


class OverShare(RuntimeError):
    """The measurement ran past its share of the smoke budget and was abandoned."""


def fit_size(size: ProbeSize, per_pass: float, seconds: float) -> ProbeSize:
    """``size`` shrunk (k halved to MIN_K, then rounds to MIN_ROUNDS) until one point's
    ``rounds × k`` passes at ``per_pass`` seconds fit ``seconds``."""
    new = ProbeSize(size.k, size.rounds, size.note)
    allowed = seconds / per_pass if per_pass > 0 else math.inf
    while new.rounds * new.k > allowed and new.k > MIN_K:
        new.k = max(MIN_K, new.k // 2)
    if new.rounds * new.k > allowed:
        new.rounds = MIN_ROUNDS
    return new


def measure_point(setup: ArmSetup, model: nn.Module, size: ProbeSize, seed: int, *,
                  clock: Callable[[], float] = time.perf_counter,
                  deadline: float = math.inf) -> dict[str, Any]:
    """B_simple of ``model``'s current weights (a copy is probed), from the smoke's stream.

    Two timed pilot passes first (the second is the cost per pass: the first may pay start-up)
    shrink ``size`` to what fits before ``deadline`` (on ``clock``); a pass that still ends
    past it raises :class:`OverShare`, so the measurement never takes more than its share of
    the budget (it once took most of it on a loaded CPU: docs/smoke-budget.md)."""
    import torch

    from lbconvert.measure.noise_probe import probe_noise_scale
    from lbconvert.model.probe import logits_of

    net = copy.deepcopy(model).to(setup.device)
    net.train()
    pool, b_s = setup.pool, setup.proxy.small_batch
    micro = setup.micro["original"]
    streams = [pool.stream(seed + 1)]  # the pilot's own samples: the probe's are unchanged

    def small_grad() -> None:
        if clock() > deadline:
            raise OverShare("ran past its share of the smoke time")
        idx = streams[-1].take(b_s)
        for chunk in idx.split(micro):
            out = logits_of(net(pool.x[chunk]))
            loss = setup.loss_fn(out, pool.y[chunk]) * (chunk.numel() / b_s)
            loss.backward()

    devices = [torch.device(setup.device).index or 0] if setup.device.startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        per_pass = 0.0
        for _ in range(2):
            t0 = clock()
            small_grad()
            per_pass = clock() - t0
        net.zero_grad(set_to_none=True)
        streams.append(pool.stream(seed))
        torch.manual_seed(seed)
        fitted = fit_size(size, per_pass, deadline - clock())
        out = probe_noise_scale(net, small_grad, b_small=b_s, k=fitted.k, rounds=fitted.rounds)
        out["pilot_passes"] = 2  # timed before the probe, in the smoke's noise_scale timing
        return out


def summarize(points: list[dict[str, Any]], source: str) -> dict[str, Any]:
    """The smoke result's ``noise_scale`` record: the last point's estimate as the headline
    (B_simple grows as training proceeds), every point, the data it came from and the cost."""
    last = points[-1]
    keys = ("b_simple", "stderr", "g2", "trace", "b_small", "b_big", "rounds")
    return {
        **{k: last[k] for k in keys},
        "at": last["at"],
        "update": last["update"],
        "weights": "original",
        "mode": "train",
        "data": source,
        "synthetic": source in BUILTINS,
        "method": METHOD,
        "points": points,
        "cost": {"passes": sum(p["passes"] for p in points),
                 "samples": sum(p["passes"] * p["b_small"] for p in points),
                 "seconds": sum(p["seconds"] for p in points)},
    }
