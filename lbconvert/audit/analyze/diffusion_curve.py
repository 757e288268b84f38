"""Rule LB010: the run's diffusion curve against a monitored baseline's, by updates.

Hoffer et al. 2017 (§3, §5): ‖w_t − w_0‖ grows ~log t, and a large-batch run generalizes like
its small-batch baseline only once it has travelled as far — by *updates*, not epochs. With both
runs monitored (``lbconvert/weight_distance``, :mod:`lbconvert.monitor.diffusion`), the rule
fits d(t) = a + b·ln t to each run up to its first LR drop (or its end), and compares

- the distance reached before the first LR drop: the run's at its drop vs the baseline's at its
  own drop (what each had explored when exploration was cut), and at the same update
  (the earlier of the two horizons);
- the slopes b (per ln t), with their standard errors.

"Short" = the run reached < 80% of the baseline's distance (the threshold LB004 uses). The fix
extrapolates the run's own fit: the update t* = exp((d_base − a)/b) at which it would reach the
baseline's distance, i.e. where to drop the LR (regime adaptation), or — if b is too small —
raise the LR toward √M (Hoffer) so that the run diffuses faster.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lbconvert.audit.analyze.findings import Finding, RuleContext, RuleResult
from lbconvert.audit.analyze.trend import fit_log, value_at, window
from lbconvert.audit.history import RunHistory

SHORT = 0.8  # below 80% of the baseline's distance: short (as LB004)
MAX_EXTRAPOLATION = 1000.0  # t*/horizon beyond ×1000 is not a usable "drop later" advice

RULE_ID = "LB010"
RULE_NAME = "diffusion-short-of-baseline"


def _horizon(h: RunHistory, first_drop: Callable[[RunHistory], float | None]
             ) -> tuple[float, str]:
    drop = first_drop(h)
    if drop is not None:
        return drop, "first LR drop"
    return h.series["weight_distance"].steps[-1], "end of the logged series"


def check_diffusion_curve(ctx: RuleContext,
                          first_drop: Callable[[RunHistory], float | None]) -> RuleResult:
    """LB010: ‖w − w0‖ before the first LR drop vs the monitored baseline's (Hoffer et al. 2017).

    ``first_drop(history)`` gives the update of the first LR drop (None without one): the
    rules module passes its own, so both rules agree on where the drop is.
    """
    h, base = ctx.history, ctx.baseline
    if base is None or base.history is None:
        return RuleResult(skipped="no --baseline run directory")
    if "weight_distance" not in h.series:
        return RuleResult(skipped="the run has no weight distance series (log it with "
                                  "lbconvert.monitor.diffusion.DiffusionMonitor)")
    bh = base.history
    if "weight_distance" not in bh.series:
        return RuleResult(skipped="the baseline has no weight distance series")
    if not (h.distance_from_init and bh.distance_from_init):
        return RuleResult(skipped="a weight distance is measured from a checkpoint after "
                                  "initialisation: sizes are not comparable")
    s, bs = h.series["weight_distance"].finite(), bh.series["weight_distance"].finite()
    if len(s) < 3 or len(bs) < 3:
        return RuleResult(skipped="fewer than 3 distance points in the run or the baseline")
    t_run, why_run = _horizon(h, first_drop)
    t_base, why_base = _horizon(bh, first_drop)
    fr = fit_log(*window(*s.arrays(), 0, t_run))
    fb = fit_log(*window(*bs.arrays(), 0, t_base))
    if fr is None or fb is None:
        return RuleResult(skipped="too few distance points before the first LR drop")
    d_run = value_at(*s.arrays(), t_run)
    d_base = value_at(*bs.arrays(), t_base)
    common = min(t_run, t_base)
    d_run_c, d_base_c = value_at(*s.arrays(), common), value_at(*bs.arrays(), common)
    if not d_base or d_base <= 0:
        return RuleResult(skipped="the baseline's distance is 0")
    ratio = d_run / d_base
    if ratio >= SHORT:
        return RuleResult()
    ev: dict[str, Any] = {
        "run_horizon_update": t_run, "run_horizon": why_run,
        "baseline_horizon_update": t_base, "baseline_horizon": why_base,
        "distance_at_horizon": d_run, "baseline_distance_at_horizon": d_base,
        "distance_ratio": round(ratio, 4),
        "common_update": common, "distance_at_common_update": d_run_c,
        "baseline_distance_at_common_update": d_base_c,
        "slope_per_ln_t": fr.slope, "slope_stderr": fr.stderr,
        "baseline_slope_per_ln_t": fb.slope, "baseline_slope_stderr": fb.stderr,
        "slope_ratio": round(fr.slope / fb.slope, 4) if fb.slope else None,
        "points": fr.n, "baseline_points": fb.n, "baseline": base.source,
    }
    msg = (f"‖w − w0‖ reached {d_run:.3g} by update {t_run:g} ({why_run}), {ratio:.0%} of the "
           f"baseline's {d_base:.3g} at update {t_base:g} ({why_base}) — {1 - ratio:.0%} short; "
           f"slope {fr.slope:.3g} ± {fr.stderr:.2g} per ln t vs the baseline's "
           f"{fb.slope:.3g} ± {fb.stderr:.2g}")
    t_star = None
    if fr.slope > 0:
        t_star = math.exp(min((d_base - fr.intercept) / fr.slope, 700.0))
        ev["updates_to_reach_baseline_distance"] = t_star
    if t_star is not None and t_star <= MAX_EXTRAPOLATION * t_run:
        fix = (f"drop the LR later: at this run's slope it reaches the baseline's distance at "
               f"update ≈ {t_star:,.0f} (×{t_star / t_run:.3g} the {t_run:g} updates now; "
               "regime adaptation, Hoffer et al. 2017)")
    else:
        fix = ("the run diffuses too slowly to catch up by training longer: raise the LR toward "
               "√M × the baseline's (Hoffer et al. 2017) with warmup, and use ghost batch norm "
               "(`lbconvert plan`)")
    return RuleResult([Finding(RULE_ID, RULE_NAME, "warning", msg, h.path, evidence=ev, fix=fix,
                               file=h.config_file)])
