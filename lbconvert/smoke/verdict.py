"""The smoke verdict: does the converted arm diffuse like the original (PASS), no farther than
the naive large batch (FAIL), in between (WARN), or was there too little evidence
(INCONCLUSIVE)? The criterion and its thresholds come from the fidelity benchmark
(docs/fidelity.md).
"""

from __future__ import annotations

import math

from lbconvert.smoke.diffusion import FAIL, INCONCLUSIVE, PASS, WARN, Arm, Verdict


def choose_window(steps: int, warmup_steps: int) -> tuple[tuple[int, int], str | None]:
    """The fit window: from after the converted arm's warmup (and ≥ 10% of the run) to the end.

    The distance curve bends (issue 6 measurements: a slope over [10, 2000] differs from
    [100, 2000] by 20–40%), so every arm is fitted over the *same* stated window. Returns
    ``(window, problem)`` where ``problem`` says why the window is not post-warmup.
    """
    start = max(2, warmup_steps + 1, int(math.ceil(0.1 * steps)))
    problem = None
    if start > steps // 2:
        problem = (
            f"warmup ({warmup_steps} updates) covers more than half of the {steps}-update smoke run"
        )
        start = max(1, steps // 2)
    return (start, steps), problem


def distance_ratios(num: Arm, den: Arm, at: list[int]) -> dict[str, float]:
    """``d_num(t) / d_den(t)`` at each update in ``at`` (keys are str(t))."""
    out = {}
    for t in at:
        a, b = num.distance_at(t), den.distance_at(t)
        out[str(t)] = a / b if b and math.isfinite(a) and math.isfinite(b) else float("nan")
    return out


def curve_gap(num: Arm, den: Arm, window: tuple[int, int]) -> tuple[float, float]:
    """``(mean |ln(d_num/d_den)|, mean ln(d_num/d_den))`` over ``den``'s marks in window."""
    logs = []
    for m in den.marks:
        if window[0] <= m.t <= window[1] and m.distance > 0:
            a = num.distance_at(m.t)
            if a > 0 and math.isfinite(a):
                logs.append(math.log(a / m.distance))
    if not logs:
        return float("nan"), float("nan")
    return sum(abs(x) for x in logs) / len(logs), sum(logs) / len(logs)


def report_points(steps: int) -> list[int]:
    """Several t to quote distance ratios at: t ≈ steps^{1/4}, steps^{1/2}, steps^{3/4}, steps."""
    pts = sorted({max(1, int(round(steps**p))) for p in (0.25, 0.5, 0.75)} | {steps})
    return pts


#: Fewer updates per arm than this and the smoke verdict is INCONCLUSIVE (see ``decide``).
MIN_CONCLUSIVE_UPDATES = 50


#: Share of the smoke budget spent training (``lbconvert.smoke.run``), for the hint.
_TRAIN_SHARE = 0.85


def decide(
    original: Arm,
    naive: Arm,
    converted: Arm,
    window: tuple[int, int],
    *,
    tolerance: float = 0.2,
    window_problem: str | None = None,
    min_updates: int = MIN_CONCLUSIVE_UPDATES,
) -> Verdict:
    """The smoke verdict over the whole window, by updates, derived from the fidelity
    benchmark (``benchmarks/fidelity.py``, docs/fidelity.md).

    The statistic is the mean log distance ratio over the window's marks,
    ``bias = mean_t ln(d_conv(t) / d_orig(t))``, and the same for the naive arm
    (``naive_bias``). Trained to the end, recipes whose weights diffused *less far* than the
    original's per update (the naive large batch, LARS with the paper's η at the √M rate)
    closed little or none of the generalization gap, while recipes that diffused as far or
    farther closed it: faster diffusion was never a sign of a bad run in the benchmark, so the
    criterion is one-sided (the old two-sided slope/curve match called the best recipes FAIL).

    - FAIL: the converted arm diverged; or it diffuses no farther than the naive large batch
      (``bias ≤ naive_bias + ln(1 + tolerance/2)``, the naive recipe itself lands here); or
      it is more than ``ln(1 + 2·tolerance)`` below the original on average.
    - PASS: ``bias ≥ −ln(1 + tolerance)`` (on average within the tolerance of the original,
      or above it) and not FAIL.
    - WARN: in between.
    - INCONCLUSIVE: too little evidence for the criterion: fewer than ``min_updates`` updates
      per arm, a window inside the warmup, or an original arm that did not diffuse. The
      reason says what would make it conclusive. Never PASS on a run that did not happen.

    ``slope_ratio`` and ``ci_overlap`` are still computed and reported, but do not decide.
    """
    gap, bias = curve_gap(converted, original, window)
    naive_gap, naive_bias = curve_gap(naive, original, window)
    of, cf = original.fit, converted.fit
    common = dict(curve_gap=gap, curve_bias=bias, naive_gap=naive_gap, tolerance=tolerance)
    if converted.diverged:
        return Verdict(
            FAIL,
            "the converted arm diverged (loss not finite)",
            "LR too high for the converted arm; lower the LR or lengthen warmup",
            None,
            False,
            **common,
        )
    steps = min(original.steps, naive.steps, converted.steps)
    if steps < min_updates:
        per_update = sum(a.step_time for a in (original, naive, converted))
        # the budget's own sizing (5% margin, TRAIN_SHARE of it for training) plus 20% for
        # set-up and measuring, rounded up to 10 s
        secs = min_updates * per_update * 1.05 / _TRAIN_SHARE * 1.2
        flag = (f"--smoke-time {10 * math.ceil(secs / 10):.0f} (at the measured step times)"
                if per_update > 0 else "a larger --smoke-time")
        return Verdict(
            INCONCLUSIVE,
            f"only {steps} updates per arm: the criterion needs at least {min_updates}",
            f"give the smoke test {min_updates}+ updates per arm: {flag}"
            + (f", --smoke-batch {max(2, original.batch // 4)} (now {original.batch})"
               if original.batch > 2 else "")  # 2 is the least BatchNorm can normalise
            + ", or a GPU (--device cuda)",
            None,
            False,
            **common,
        )
    if window_problem:
        return Verdict(
            INCONCLUSIVE,
            f"the fit window is not post-warmup: {window_problem}",
            "warmup too long for the smoke window; raise --smoke-time or shorten warmup",
            None,
            False,
            **common,
        )
    if of is None or cf is None or not of.slope > 0 or original.diverged \
            or not math.isfinite(bias):
        return Verdict(
            INCONCLUSIVE,
            "the original arm did not diffuse in the window (slope ≤ 0 or no fit), "
            "so there is nothing to compare with",
            "smoke budget too short or LR too low in the original run; raise --smoke-time",
            None,
            False,
            **common,
        )
    ratio = cf.slope / of.slope
    overlap = cf.ci_low <= of.ci_high and of.ci_low <= cf.ci_high
    pass_floor = -math.log1p(tolerance)
    fail_floor = -math.log1p(2 * tolerance)
    naive_margin = math.log1p(tolerance / 2)
    naive_known = math.isfinite(naive_bias)
    numbers = (
        f"mean ln(d_conv/d_orig) {bias:+.3f} (naive {naive_bias:+.3f}; PASS ≥ {pass_floor:.3f}"
        f", FAIL < {fail_floor:.3f} or ≤ naive + {naive_margin:.3f}), slope ratio {ratio:.2f}"
    )
    cause = _likely_cause(ratio, bias, converted, tolerance)
    if bias < fail_floor or (naive_known and bias <= naive_bias + naive_margin):
        why = ("diffuses no farther than the naive large batch"
               if naive_known and bias <= naive_bias + naive_margin
               else "diffuses much less far than the original")
        return Verdict(FAIL, f"converted run {why}: {numbers}", cause, ratio, overlap, **common)
    if bias >= pass_floor:
        return Verdict(
            PASS,
            f"converted run diffuses at least as far as the original: {numbers}",
            None,
            ratio,
            overlap,
            **common,
        )
    return Verdict(
        WARN,
        f"converted run diffuses somewhat less far than the original: {numbers}",
        cause,
        ratio,
        overlap,
        **common,
    )


def _likely_cause(ratio: float, bias: float, converted: Arm, tolerance: float) -> str:
    # A curve far below / above the original is an LR level problem whatever the slope says
    # (a saturating original curve can have a small slope in the window).
    far = math.log1p(2 * tolerance)
    lars = "lars" in converted.optimizer.lower()
    if bias < -far or (bias < 0 and ratio < 1):
        if lars:
            return (
                "LR too low for LARS trust coefficient: γ·η per-layer steps diffuse slower than "
                "the original; run --calibrate for the multiplier"
            )
        return "LR too low: the converted run diffuses slower than the original; run --calibrate"
    if bias > far or (bias > 0 and ratio > 1):
        return "LR too high: the converted run diffuses faster than the original; run --calibrate"
    if bias > 0:
        return (
            "diffuses faster early and then flattens (high LR, weight decay); the slope is "
            "lower although the distance is larger — run --calibrate"
        )
    return (
        "diffuses slower early and then catches up (warmup or LARS ramp); check the window "
        "and run --calibrate"
    )
