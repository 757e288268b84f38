"""Weight diffusion ‖w_t − w_0‖ against log t: marks, slope fit, ratios and the verdict.

Hoffer, Hubara & Soudry 2017 ("Train longer, generalize better", section 3) model SGD as a
random walk on a random potential whose distance from initialization grows like an
ultra-slow diffusion, ‖w_t − w_0‖ ~ log t. Large batches at the same learning rate diffuse
more slowly (the generalization gap); the √M learning rate, Ghost Batch Normalization and
enough updates restore the curve. This module holds the result dataclasses and the
statistics; it imports no torch at module level (the torch-only helpers import it inside).

The statistic, precisely:

- ``d(t) = ‖w_t − w_0‖₂`` over all trainable parameters, recorded at log-spaced updates t.
- Fit ``d = a + b·ln t`` by ordinary least squares over the marks in a *window*
  ``[t_lo, t_hi]`` that starts after the converted arm's warmup; ``b`` is the slope.
- 95% confidence interval of ``b``: percentile bootstrap over the marks of the window
  (pairs resampled with replacement, seeded). Neighbouring marks are correlated, so this
  interval is a lower bound on the real uncertainty; the issue's measurements put the
  seed-to-seed spread of a slope at ±0.001–0.01.
- The verdict uses the whole window, not one number: the slope ratio
  ``r = b_converted / b_original`` and the mean log distance ratio
  ``gap = mean_t |ln(d_converted(t) / d_original(t))|`` over the window's marks.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from lbconvert._json import dataclass_dict, json_safe

#: Verdict levels, best first; INCONCLUSIVE: too little evidence to judge (exit 0).
PASS, WARN, FAIL, INCONCLUSIVE = "PASS", "WARN", "FAIL", "INCONCLUSIVE"


@dataclass
class Mark:
    """One recorded point of an arm: update ``t``, distance, per-group distances, loss."""

    t: int
    distance: float
    groups: dict[str, float]
    loss: float
    samples: int
    lr: float


@dataclass
class Fit:
    """``distance ≈ intercept + slope · ln t`` over ``window`` (inclusive), with a 95% CI."""

    slope: float
    intercept: float
    ci_low: float
    ci_high: float
    window: tuple[int, int]
    n_marks: int
    r2: float

    def predict(self, t: float) -> float:
        """The fitted distance at update ``t``."""
        return self.intercept + self.slope * math.log(t)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict; ``window`` as a two-item list."""
        d = asdict(self)
        d["window"] = list(self.window)
        return {k: json_safe(v) for k, v in d.items()}


@dataclass
class Arm:
    """One training arm of the smoke test and what it recorded."""

    name: str  # original | naive | converted
    description: str
    batch: int
    micro_batch: int
    accumulation: int
    lr: float
    optimizer: str
    steps: int
    ghost_batch_size: int | None = None
    warmup_steps: int = 0
    step_time: float = 0.0  # seconds per update, measured before the run
    seconds: float = 0.0  # wall time of the run
    marks: list[Mark] = field(default_factory=list)
    fit: Fit | None = None
    diverged: bool = False
    notes: list[str] = field(default_factory=list)
    sharpness: dict[str, Any] | None = None

    @property
    def samples_seen(self) -> int:
        """Training samples consumed by the whole run."""
        return self.steps * self.batch

    def distance_at(self, t: float) -> float:
        """Distance at update ``t``, interpolated linearly in ln t between marks."""
        return interpolate_log_t([m.t for m in self.marks], [m.distance for m in self.marks], t)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict with the curve as parallel lists (easy to plot)."""
        return {
            "name": self.name,
            "description": self.description,
            "batch": self.batch,
            "micro_batch": self.micro_batch,
            "accumulation": self.accumulation,
            "lr": self.lr,
            "optimizer": self.optimizer,
            "steps": self.steps,
            "ghost_batch_size": self.ghost_batch_size,
            "warmup_steps": self.warmup_steps,
            "samples_seen": self.samples_seen,
            "step_time": self.step_time,
            "seconds": self.seconds,
            "diverged": self.diverged,
            "curve": {
                "t": [m.t for m in self.marks],
                "distance": [json_safe(m.distance) for m in self.marks],
                "loss": [json_safe(m.loss) for m in self.marks],
                "samples": [m.samples for m in self.marks],
                "lr": [m.lr for m in self.marks],
                "groups": {
                    g: [json_safe(m.groups.get(g, float("nan"))) for m in self.marks]
                    for g in (self.marks[0].groups if self.marks else {})
                },
            },
            "fit": self.fit.to_dict() if self.fit else None,
            "notes": list(self.notes),
            "sharpness": self.sharpness,
        }


@dataclass
class Verdict:
    """PASS / WARN / FAIL with the numbers it was decided on and the likely cause."""

    level: str
    reason: str
    likely_cause: str | None
    slope_ratio: float | None
    ci_overlap: bool
    curve_gap: float | None  # mean |ln(d_conv/d_orig)| over the window
    curve_bias: float | None  # mean ln(d_conv/d_orig): < 0 slower, > 0 faster
    naive_gap: float | None
    tolerance: float
    basis: str = "updates"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclass_dict(self)


@dataclass
class Calibration:
    """The ``--calibrate`` search: LR multiplier on the plan's LR whose curve matches best."""

    multiplier: float  # on plan.lr_new
    lr: float
    effective_multiplier: float | None  # lr / lr_old
    sqrt_m: float
    rule_multiplier: float
    gap: float  # mean |ln(d_conv/d_orig)| at the chosen multiplier
    steps: int
    trials: list[dict[str, float]]
    seconds: float
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclass_dict(self)


@dataclass
class DiffusionResult:
    """The smoke stage's result: three arms, their fits, ratios, comparisons, verdict.

    ``ratios`` holds converted/original and naive/original slope ratios and distance ratios
    at several t (by updates). ``by_samples`` compares at equal samples seen. ``proxy``
    says how the plan's batches were scaled down to fit the budget.
    """

    arms: dict[str, Arm]
    window: tuple[int, int]
    ratios: dict[str, Any]
    by_updates: list[dict[str, Any]]
    by_samples: list[dict[str, Any]]
    verdict: Verdict
    proxy: dict[str, Any]
    device: str
    timings: dict[str, float]
    data: str
    seed: int
    notes: list[str] = field(default_factory=list)
    calibration: Calibration | None = None
    #: processes, per-rank batch/micro-batch, per-rank step time and peak memory (smoke.run)
    layout: dict[str, Any] | None = None
    #: gradient noise scale B_simple at the original weights (smoke.noise.summarize), or None
    noise_scale: dict[str, Any] | None = None
    comparison_basis: str = (
        "updates: Hoffer et al. 2017 adapt the regime so the large batch makes the same number "
        "of updates, and the diffusion law ‖w_t − w_0‖ ~ log t is in updates (one random-walk "
        "step per update); comparing at equal samples would ask the large batch to travel as "
        "far in M× fewer steps, which is the naive same-epochs regime that causes the gap."
    )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict for report.json; curves and fit lines ready to plot."""
        fit_lines = {}
        for name, arm in self.arms.items():
            if arm.fit is not None:
                lo, hi = arm.fit.window
                fit_lines[name] = {
                    "t": [lo, hi],
                    "distance": [json_safe(arm.fit.predict(lo)), json_safe(arm.fit.predict(hi))],
                }
        return {
            "arms": {k: a.to_dict() for k, a in self.arms.items()},
            "window": list(self.window),
            "fit_lines": fit_lines,
            "ratios": json_safe(self.ratios),
            "by_updates": json_safe(self.by_updates),
            "by_samples": json_safe(self.by_samples),
            "comparison_basis": self.comparison_basis,
            "verdict": self.verdict.to_dict(),
            "proxy": json_safe(self.proxy),
            "device": self.device,
            "timings": json_safe(self.timings),
            "data": self.data,
            "seed": self.seed,
            "notes": list(self.notes),
            "calibration": self.calibration.to_dict() if self.calibration else None,
            "layout": json_safe(self.layout),
            "noise_scale": json_safe(self.noise_scale),
        }


def log_spaced_steps(total: int, count: int = 48) -> list[int]:
    """About ``count`` distinct updates in [1, total], evenly spaced in log t, ending at total."""
    if total < 1:
        return []
    if total <= count:
        return list(range(1, total + 1))
    marks = {1, total}
    for i in range(count):
        marks.add(int(round(math.exp(math.log(total) * i / (count - 1)))))
    return sorted(m for m in marks if 1 <= m <= total)


def fit_log_slope(
    t: list[float],
    d: list[float],
    window: tuple[int, int] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Fit:
    """OLS fit of ``d = a + b·ln t`` over the marks in ``window``, with a bootstrap CI of b.

    Hoffer et al. 2017, eq. "‖w_t − w_0‖ ~ log t". The interval is the percentile bootstrap
    over marks (pairs resampled with replacement, ``n_boot`` times, seeded); resamples with
    a single distinct t are skipped. Raises ValueError with fewer than 3 usable marks.
    """
    lo, hi = window if window is not None else (min(t), max(t))
    pts = [
        (math.log(ti), di)
        for ti, di in zip(t, d)
        if lo <= ti <= hi and ti > 0 and math.isfinite(di)
    ]
    if len(pts) < 3:
        raise ValueError(f"need at least 3 finite marks in window [{lo}, {hi}], got {len(pts)}")
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    slope, intercept = _ols(xs, ys)
    mean_y = sum(ys) / len(ys)
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - intercept - slope * x) ** 2 for x, y in pts)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    rng = random.Random(seed)
    boots = []
    n = len(pts)
    for _ in range(n_boot):
        sample = [pts[rng.randrange(n)] for _ in range(n)]
        if len({p[0] for p in sample}) < 2:
            continue
        boots.append(_ols([p[0] for p in sample], [p[1] for p in sample])[0])
    boots.sort()
    alpha = (1.0 - level) / 2
    ci_low = _quantile(boots, alpha) if boots else slope
    ci_high = _quantile(boots, 1 - alpha) if boots else slope
    return Fit(
        slope=slope,
        intercept=intercept,
        ci_low=ci_low,
        ci_high=ci_high,
        window=(int(lo), int(hi)),
        n_marks=n,
        r2=r2,
    )


def interpolate_log_t(ts: list[int], ds: list[float], t: float) -> float:
    """Linear interpolation of ``ds`` in ln t; NaN outside ``[ts[0], ts[-1]]``."""
    if not ts or t < ts[0] or t > ts[-1]:
        return float("nan")
    for i in range(1, len(ts)):
        if ts[i] >= t:
            t0, t1 = ts[i - 1], ts[i]
            if t1 == t0 or t == t1:
                return ds[i]
            w = (math.log(t) - math.log(t0)) / (math.log(t1) - math.log(t0))
            return ds[i - 1] + w * (ds[i] - ds[i - 1])
    return ds[-1]


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


def _ols(xs: list[float], ys: list[float]) -> tuple[float, float]:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    slope = sxy / sxx if sxx > 0 else 0.0
    return slope, my - slope * mx


def _quantile(sorted_vals: list[float], q: float) -> float:
    pos = q * (len(sorted_vals) - 1)
    i = int(math.floor(pos))
    j = min(i + 1, len(sorted_vals) - 1)
    return sorted_vals[i] + (pos - i) * (sorted_vals[j] - sorted_vals[i])

