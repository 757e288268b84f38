"""The diffusion fit: ‖w_t − w_0‖ ≈ a + b·ln t over a window of updates (Hoffer et al. 2017,
"ultra-slow diffusion"), by least squares with a bootstrap confidence interval on the slope b.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass
from typing import Any

from lbconvert._json import json_safe


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
