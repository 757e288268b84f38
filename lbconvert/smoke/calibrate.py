"""``--calibrate``: the smallest change to the plan's LR that makes the smoke verdict PASS.

It asks the verdict's own question (``lbconvert.smoke.verdict.decide``): will the converted
run end at least as far from its initialisation as the original, without diffusing more than
``MAX_SLOPE_RATIO`` × faster? When the plan's LR already does, the answer is 1× — in the
fidelity benchmark (docs/fidelity.md) lowering such an LR to match the original's curve closed
*less* of the generalization gap (43% against 87% on the 2-D pair). An LR that ends short is
raised to the least multiplier that reaches the original; one that diverges or runs past the
slope bound is lowered to the largest that does not.

Hoffer et al. 2017 match the small-batch weight-increment statistics with LR ∝ √M; with
LARS (You et al. 2017) the per-layer step is γ·η·‖w‖/‖∇w‖, so whether the plan's γ gives the
original's diffusion is an empirical question this search answers on the smoke proxy.
"""

from __future__ import annotations

import math
import time

from lbconvert.smoke.arms import ArmSetup, run_arm
from lbconvert.smoke.diffusion import Arm, Calibration
from lbconvert.smoke.fit import fit_log_slope
from lbconvert.smoke.verdict import (
    MAX_SLOPE_RATIO,
    choose_window,
    curve_gap,
    final_gap,
    horizon_for,
)

#: A trial's class: ends short of the original, passes, or diffuses too fast / diverges.
LOW, OK, HIGH = "low", "ok", "high"


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
    max_slope_ratio: float = MAX_SLOPE_RATIO,
) -> Calibration:
    """Find the multiplier on ``plan.lr_new`` nearest 1× at which the verdict's criterion holds.

    Short converted runs, each classed by the verdict's statistics against
    ``original_arm`` (fitted over the same window): *low* — final gap
    ``ln(d_conv(U_new)/d_orig(U_old)) < 0`` (``horizon_for``, as in the verdict); *high* —
    diverged or slope ratio above ``max_slope_ratio``; *ok* otherwise. From 1×, step by
    ×``factor`` on log scale toward *ok* until the class changes, then bisect in log space
    until the bracket is within 1.2× or the budget (``budget`` seconds) is spent — but at
    least ``min_trials`` runs, so a slow machine still gets a searched answer (noted when over
    budget). Each run is as long as fits about 8 runs in the budget (4 to ``steps`` updates).
    Returns the *ok* multiplier nearest the boundary (the least change that passes), or, if
    no tried multiplier passes, the one with the smallest |final gap|. 1× when 1× is *ok*.
    """
    t0 = time.perf_counter()
    n = int(min(steps, max(4, budget * 0.9 / (8 * max(step_time, 1e-6)))))
    window, _ = choose_window(n, setup.proxy.warmup_steps)
    orig = _refit(original_arm, window, seed)
    h = horizon_for(setup.plan, window[1])
    trials: list[dict[str, float]] = []

    def trial(mult: float) -> str:
        arm = _refit(run_arm(setup.build("converted", mult), n, seed), window, seed)
        gap, bias = curve_gap(arm, orig, window)
        final = final_gap(arm, h.converted, orig, h.original)
        ratio = (arm.fit.slope / orig.fit.slope
                 if arm.fit and orig.fit and orig.fit.slope > 0 else math.nan)
        if arm.diverged or not math.isfinite(bias):
            gap, bias, final, ratio = math.inf, math.inf, math.inf, math.inf
        if setup.dist is not None:  # every rank takes the same branch: rank 0's numbers
            from lbconvert.smoke.distributed import broadcast_values

            gap, bias, final, ratio = broadcast_values([gap, bias, final, ratio], setup.dist)
        cls = HIGH if final == math.inf or ratio > max_slope_ratio else (
            OK if final >= 0 else LOW)
        trials.append({"multiplier": mult, "gap": gap, "bias": bias, "final_gap": final,
                       "slope_ratio": ratio, "class": cls, "steps": arm.steps})
        return cls

    def time_left() -> bool:
        spent = time.perf_counter() - t0
        per = spent / max(1, len(trials))
        more = len(trials) < min_trials or (len(trials) < max_trials and spent + per <= budget)
        if setup.dist is not None:  # one more run only if every rank has the time
            from lbconvert.smoke.distributed import all_reduce

            more = all_reduce([float(more)], setup.dist, "min")[0] > 0
        return more

    first = trial(1.0)
    keep = first == OK
    lo = hi = None  # the bracket: lo on the low side of the boundary searched, hi above it
    mult = 1.0
    if first == LOW:
        lo = 1.0
        while hi is None and time_left() and mult < factor**5:
            mult *= factor
            if trial(mult) == LOW:
                lo = mult
            else:
                hi = mult
    elif first == HIGH:
        hi = 1.0
        while lo is None and time_left() and mult > factor**-5:
            mult /= factor
            if trial(mult) == HIGH:
                hi = mult
            else:
                lo = mult
    while not keep and lo is not None and hi is not None and hi / lo > 1.2 and time_left():
        mid = math.sqrt(lo * hi)
        cls = trial(mid)
        # searching up, the boundary is LOW | OK: keep bisecting toward it; searching down,
        # it is OK | HIGH
        if cls == LOW or (first == HIGH and cls == OK):
            lo = mid
        else:
            hi = mid
    passing = [t for t in trials if t["class"] == OK]
    if keep:
        best = trials[0]
    elif passing:
        best = (min(passing, key=lambda t: t["multiplier"]) if first == LOW
                else max(passing, key=lambda t: t["multiplier"]))
    else:
        best = min(trials, key=lambda t: abs(t["final_gap"]) if math.isfinite(t["final_gap"])
                   else math.inf)
    plan = setup.plan
    seconds = time.perf_counter() - t0
    notes = []
    if keep:
        notes.append(
            f"the plan's LR already ends at least as far from initialisation as the original "
            f"(final ln(d_conv/d_orig) {trials[0]['final_gap']:+.3f} ≥ 0, slope ratio "
            f"{trials[0]['slope_ratio']:.2f} ≤ {max_slope_ratio:g}): keep it — lowering it to "
            "match the original's curve closed less of the gap in the fidelity benchmark"
        )
    elif not passing:
        notes.append("no multiplier tried passes the verdict's criterion: the answer is the "
                     "one nearest to it, not a passing LR")
    if seconds > budget:
        notes.append(
            f"calibration took {seconds:.0f}s, over its {budget:g}s budget, to make "
            f"{len(trials)} runs"
        )
    if not keep and (lo is None or hi is None):
        notes.append(
            "the boundary was not bracketed (every run was on one side of it): the "
            "multiplier is the best tried, not a crossing"
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
        final_gap=best["final_gap"],
        steps=n,
        trials=trials,
        seconds=seconds,
        notes=notes,
    )


def _refit(arm: Arm, window: tuple[int, int], seed: int) -> Arm:
    """``arm`` with its fit over ``window`` (the trials' window, shorter than the run's)."""
    import copy

    out = copy.copy(arm)
    try:
        out.fit = fit_log_slope([m.t for m in arm.marks], [m.distance for m in arm.marks],
                                window, seed=seed, n_boot=0)
    except ValueError:
        out.fit = None
    return out
