"""Small statistics for the rules: least-squares slopes with standard errors.

numpy (no torch): a run may log a million points, and the rules fit windows of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Slope:
    """Ordinary least-squares fit y = a + b·x: slope, its standard error and t = b/se."""

    slope: float
    stderr: float
    n: int
    intercept: float

    @property
    def t(self) -> float:
        """t statistic of the slope (±inf for a perfect fit with non-zero slope)."""
        if self.stderr == 0:
            return 0.0 if self.slope == 0 else math.copysign(math.inf, self.slope)
        return self.slope / self.stderr


def fit(xs, ys) -> Slope | None:
    """OLS slope of ``ys`` on ``xs`` with the usual standard error; None below 3 points."""
    import numpy as np

    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    n = x.size
    if n < 3:
        return None
    mx, my = x.mean(), y.mean()
    dx = x - mx
    sxx = float(dx @ dx)
    if sxx == 0:
        return None
    b = float(dx @ (y - my)) / sxx
    a = float(my - b * mx)
    r = y - a - b * x
    se = math.sqrt(float(r @ r) / (n - 2) / sxx)
    return Slope(b, se, n, a)


def fit_log(steps, values) -> Slope | None:
    """Slope of ``values`` against ln(step) (steps ≤ 0 and non-finite values dropped)."""
    import numpy as np

    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = (s > 0) & np.isfinite(v)
    return fit(np.log(s[keep]), v[keep])


def window(steps, values, lo: float, hi: float):
    """Points with lo ≤ step ≤ hi (numpy arrays)."""
    import numpy as np

    s = np.asarray(steps, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    keep = (s >= lo) & (s <= hi)
    return s[keep], v[keep]


def value_at(steps, values, step):
    """Linear interpolation of a sorted series at ``step`` (clamped to its ends);
    ``step`` may be an array. None for an empty series."""
    import numpy as np

    if len(steps) == 0:
        return None
    out = np.interp(step, np.asarray(steps, dtype=np.float64),
                    np.asarray(values, dtype=np.float64))
    return float(out) if np.ndim(out) == 0 else out
