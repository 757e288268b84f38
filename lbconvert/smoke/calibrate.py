"""``--calibrate``: the LR multiplier that makes the converted run diffuse like the original.

One-sided, as the smoke verdict is (``lbconvert.smoke.verdict.decide``): when the plan's LR
already diffuses at least as far as the original (within the tolerance), the answer is 1×.
In the fidelity benchmark (docs/fidelity.md) lowering such an LR to match the original's
curve closed *less* of the generalization gap (43% against 87% on the 2-D pair), so the
search only runs when the plan's LR diffuses too slowly or diverges.

Hoffer et al. 2017 match the small-batch weight-increment statistics with LR ∝ √M; with
LARS (You et al. 2017) the per-layer step is γ·η·‖w‖/‖∇w‖, so whether the plan's γ gives the
original's diffusion is an empirical question this search answers on the smoke proxy.
"""

from __future__ import annotations

import math
import time

from lbconvert.smoke.arms import ArmSetup, run_arm
from lbconvert.smoke.diffusion import Arm, Calibration
from lbconvert.smoke.verdict import choose_window, curve_gap


def calibrate_lr(
    setup: ArmSetup,
    original_arm: Arm,
    steps: int,
    step_time: float,
    budget: float,
    seed: int,
    *,
    factor: float = 8.0,
    max_trials: int = 12,
    min_trials: int = 4,
    tolerance: float = 0.2,
) -> Calibration:
    """Find the multiplier on ``plan.lr_new`` whose converted curve matches the original's.

    Short converted runs; the signed mean ln(d_conv/d_orig) over the window decides the
    direction (distance grows with the LR): bracket by steps of ×``factor`` on log scale
    from 1, then bisect in log space until the bracket is within ±10% or the budget
    (``budget`` seconds) is spent — but at least ``min_trials`` runs, so a slow machine
    still gets a searched answer (noted when over budget). Each run is as long as fits
    about 8 runs in the budget (4 to ``steps`` updates). Returns the trial with the
    smallest mean |ln ratio|. When the first run, at 1×, has a mean ln ratio of at least
    ``−ln(1 + tolerance)`` (the verdict's PASS floor) and did not diverge, 1× is returned
    without a search.
    """
    t0 = time.perf_counter()
    n = int(min(steps, max(4, budget * 0.9 / (8 * max(step_time, 1e-6)))))
    window, _ = choose_window(n, setup.proxy.warmup_steps)
    trials: list[dict[str, float]] = []

    def trial(mult: float) -> float:
        arm = run_arm(setup.build("converted", mult), n, seed)
        gap, bias = curve_gap(arm, original_arm, window)
        if arm.diverged or not math.isfinite(bias):
            gap, bias = math.inf, math.inf
        if setup.dist is not None:  # every rank takes the same branch: rank 0's numbers
            from lbconvert.smoke.distributed import broadcast_values

            gap, bias = broadcast_values([gap, bias], setup.dist)
        trials.append({"multiplier": mult, "gap": gap, "bias": bias, "steps": arm.steps})
        return bias

    def time_left() -> bool:
        spent = time.perf_counter() - t0
        per = spent / max(1, len(trials))
        more = len(trials) < min_trials or (len(trials) < max_trials and spent + per <= budget)
        if setup.dist is not None:  # one more run only if every rank has the time
            from lbconvert.smoke.distributed import all_reduce

            more = all_reduce([float(more)], setup.dist, "min")[0] > 0
        return more

    lo = hi = None
    bias = trial(1.0)
    mult = 1.0
    floor = -math.log1p(tolerance)
    keep = math.isfinite(bias) and bias >= floor
    if keep:
        lo = hi = 1.0
    elif bias < 0:
        lo = 1.0
        while hi is None and time_left() and mult < factor**5:
            mult *= factor
            if trial(mult) >= 0:
                hi = mult
            else:
                lo = mult
    else:
        hi = 1.0
        while lo is None and time_left() and mult > factor**-5:
            mult /= factor
            if trial(mult) < 0:
                lo = mult
            else:
                hi = mult
    while lo is not None and hi is not None and hi / lo > 1.2 and time_left():
        mid = math.sqrt(lo * hi)
        if trial(mid) < 0:
            lo = mid
        else:
            hi = mid
    best = trials[0] if keep else min(trials, key=lambda r: r["gap"])
    plan = setup.plan
    seconds = time.perf_counter() - t0
    notes = []
    if keep:
        notes.append(
            f"the plan's LR already diffuses at least as far as the original (mean "
            f"ln(d_conv/d_orig) {bias:+.3f} ≥ {floor:.3f}): keep it — lowering it to match the "
            "original's curve closed less of the gap in the fidelity benchmark"
        )
    if seconds > budget:
        notes.append(
            f"calibration took {seconds:.0f}s, over its {budget:g}s budget, to make "
            f"{len(trials)} runs"
        )
    if lo is None or hi is None:
        notes.append(
            "the match was not bracketed (every run was on one side of the original "
            "curve): the multiplier is the best tried, not a crossing"
        )
    return Calibration(
        multiplier=best["multiplier"],
        lr=plan.lr_new * best["multiplier"],
        effective_multiplier=(plan.lr_new * best["multiplier"] / plan.lr_old)
        if plan.lr_old
        else None,
        sqrt_m=math.sqrt(plan.ratio),
        rule_multiplier=plan.lr_multiplier,
        gap=best["gap"],
        steps=n,
        trials=trials,
        seconds=seconds,
        notes=notes,
    )
