"""The audit rules, one function each, collected in :data:`RULES` (add a rule there).

Each rule decides on numbers it puts in the finding's evidence and computes the fix with
``lbconvert.plan.plan.make_plan`` — the same arithmetic as ``lbconvert plan``.
Papers: Hoffer et al. 2017 (√M LR, regime adaptation, ~log t diffusion, ghost BN),
Goyal et al. 2017 (warmup), You et al. 2017 (LARS warmup), Masters & Luschi 2018 (small
BN batches), Keskar et al. 2017 (generalization gap at large batch).
"""

from __future__ import annotations

import math
import re
from typing import Any

from lbconvert.audit.analyze import evidence
from lbconvert.audit.analyze.diffusion_curve import check_diffusion_curve
from lbconvert.audit.analyze.findings import Finding, Rule, RuleContext, RuleResult
from lbconvert.audit.analyze.inputs import RULES as INPUT_RULES
from lbconvert.audit.analyze.trend import fit, fit_log, value_at, window
from lbconvert.audit.history import RunHistory

# Thresholds, each with its reason. LB001's come from measured runs: see evidence.py.
UPDATES_WARNING = evidence.UPDATES_WARNING
LR_LOW = 0.5  # × √M: below half the √M rule (Hoffer) the run is clearly unscaled
LR_HIGH = 2.0  # × M: above twice the linear rule (Goyal) nothing in the literature trains
LARGE_RATIO = 8  # M ≥ 8: Goyal et al. needed warmup from ~8× their 256 base batch
LARGE_BATCH = 2048  # without a baseline: a quarter of Goyal's 8k, where no-warmup failed
BN_BATCH_MAX = 128  # Hoffer's ghost size; Masters & Luschi found ≈ 8 best, 32–64 still fine
T_SIGNIFICANT = 3.0  # |t| of a slope taken as "significant" (log-spaced points are few)
END_FRACTION = 0.2  # "the end" = the last 20% of updates
MIN_FALL = 0.01  # a loss change below 1% over the end window is not "still falling"
GAP_GROWTH = 0.25  # the train/val gap grew by > 25% over the second half of training


def _plan_for(history: RunHistory, source_batch: int, lr: float | None,
              epochs: float | None, target: int, **kw: Any):
    from lbconvert.config.read import TrainConfig
    from lbconvert.plan.plan import make_plan

    cfg = TrainConfig(batch_size=source_batch, lr=lr, epochs=epochs,
                      dataset_size=history.get("dataset_size"),
                      milestones=list(history.get("milestones", []) or []),
                      schedule=history.get("schedule"), gamma=history.get("gamma"),
                      momentum=history.get("momentum"),
                      weight_decay=history.get("weight_decay"))
    return make_plan(cfg, max(target, source_batch), optimizer="keep", **kw)


def _loc(history: RunHistory, *keys: str) -> tuple[str | None, int | None]:
    for k in keys:
        cv = history.config.get(k)
        if cv is not None and cv.file:
            return cv.file, cv.line
    return history.config_file, None


# "640 → 640", "[30, 60] → [30, 60]": a change to the value the run already has
_NOOP = re.compile(r"(?<![\w.\[])(\[[^\]]*\]|[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?)"
                   r"\s*→\s*\1(?![\w.\]])")


def noop_change(fix: str) -> str | None:
    """The first "X → X" in a fix (a change to the current value), else None."""
    m = _NOOP.search(fix)
    return m.group(0) if m else None


def _finding(rule: str, ctx: RuleContext, message: str, ev: dict, fix: str,
             keys: tuple[str, ...] = (), severity: str | None = None, *,
             same_fix: str | None = None, **kw) -> Finding:
    """A finding of ``rule``; a fix that would set a value to what the run already has is
    never printed: ``same_fix`` (or a sentence saying so) replaces it."""
    r = RULES_BY_ID[rule]
    file, line = _loc(ctx.history, *keys)
    if noop_change(fix):
        fix = same_fix or ("the setting already has the value the plan gives; the evidence "
                           "above says what differs from the baseline")
    return Finding(rule, r.name, severity or r.severity, message, ctx.history.path,
                   evidence=ev, fix=fix, file=file, line=line, **kw)


def _g(x: float | None) -> str:
    return "?" if x is None else f"{x:.4g}"


def _fmt_list(xs) -> str:
    return "[" + ", ".join(_g(x) for x in xs) + "]"


def _same(a: Any, b: Any) -> bool:
    """Equal as printed (4 significant digits; lists element by element)."""
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        a, b = list(a or []), list(b or [])
        return len(a) == len(b) and all(_g(x) == _g(y) for x, y in zip(a, b))
    return _g(a) == _g(b)


def _peak_lr(history: RunHistory) -> tuple[float | None, str]:
    s = history.series.get("lr")
    if s is not None and s.finite().values:
        return max(s.finite().values), f"logged {s.tag} (max)"
    cv = history.config.get("lr")
    return (cv.value, cv.source) if cv else (None, "")


def _baseline_updates(h: RunHistory, base) -> tuple[float | None, str]:
    """The reference's update count and how it is known (given, from epochs, or assumed)."""
    if base.updates is not None:
        return base.updates, "given" if base.history is None else "logged"
    b, m = h.batch_size, None
    if b and base.batch_size:
        m = b / base.batch_size
    n = h.get("dataset_size")
    if base.epochs is not None and base.batch_size and n:
        return base.epochs * math.ceil(n / base.batch_size), "from --reference-epochs"
    if base.epochs is not None and m and h.epochs_done and h.total_updates:
        return base.epochs * h.total_updates / h.epochs_done * m, "from --reference-epochs"
    if base.length_assumed and m and h.total_updates is not None:
        return h.total_updates * m, "assumed"
    return None, ""


def adaptation(h: RunHistory, base, m: float | None) -> tuple[bool, str]:
    """Whether the logs show the adaptations of the measured "adapted" runs: peak LR within
    LB002's band [√M/2, 2M] × the baseline's (Hoffer √M, Goyal linear) and a warmup.

    GhostBatchNorm, which the measured runs also had, does not show in logs.
    """
    if m is None:
        return False, "M is unknown"
    lr, _ = _peak_lr(h)
    if lr is None or base.lr is None:
        return False, "the " + ("run's" if lr is None else "baseline's") + " LR is unknown"
    k = lr / base.lr
    if not LR_LOW * math.sqrt(m) <= k <= LR_HIGH * m:
        return False, f"LR ×{k:.3g} the baseline's, outside ×{LR_LOW * math.sqrt(m):.3g}" \
                      f"…×{LR_HIGH * m:.3g} (√M/2 … 2M)"
    has, why = warmup_evidence(h)
    if not has:
        return False, f"LR ×{k:.3g} the baseline's but no warmup shown ({why})"
    return True, f"LR ×{k:.3g} the baseline's (√M = {math.sqrt(m):.3g}) and a warmup ({why})"


def check_updates(ctx: RuleContext) -> RuleResult:
    """Too few updates: run updates / baseline updates < 0.9 (Hoffer regime adaptation).

    The bounds are measured (lbconvert.audit.analyze.evidence, docs/audit-rules.md): a
    run whose logs show the adaptations (LR scaled, warmup) is an error only below the
    smallest share at which adapted runs closed half the generalization gap, otherwise a
    warning citing what such runs reached; an unscaled run is an error below the smallest
    share at which unscaled runs closed half the gap. The update counts alone are evidence
    (no batch size needed). A reference whose length is assumed, or an update count that is
    only a lower bound (damaged or cut event file), caps the finding at a warning.
    """
    h, base = ctx.history, ctx.baseline
    if base is None:
        return RuleResult(skipped="no --baseline or --reference-batch")
    if h.total_updates is None:
        return RuleResult(skipped="the run's update count is unknown")
    base_updates, how = _baseline_updates(h, base)
    if base_updates is None or base_updates <= 0:
        return RuleResult(skipped="the reference's update count is unknown: pass "
                                  "--reference-updates N or --reference-epochs E")
    b = h.batch_size
    m = b / base.batch_size if b and base.batch_size else None
    ratio = h.total_updates / base_updates
    if ratio >= UPDATES_WARNING or (m is not None and m <= 1):
        return RuleResult()
    lower = bool(h.damage)  # reading stopped at damage: more updates may have been made
    adapted, why = adaptation(h, base, m)
    kind = "adapted" if adapted else "unscaled"
    bound = evidence.error_share(kind)
    seen = evidence.nearest_below(kind, ratio)
    ev: dict[str, Any] = {"batch_size": b, "baseline_batch_size": base.batch_size, "M": m,
                          "updates": h.total_updates, "baseline_updates": base_updates,
                          "baseline_updates_source": how, "updates_ratio": round(ratio, 6),
                          "epochs": h.epochs_done, "baseline": base.source,
                          "adaptation": kind, "adaptation_evidence": why,
                          "error_below_ratio": bound,
                          "measured": seen.text() if seen else None}
    if lower:
        ev["updates_lower_bound"] = True
    sev = "error" if ratio < bound else "warning"
    if how == "assumed" or lower:
        sev = "warning"
    at_b = f" at batch {b}" if b else ""
    at_base = f" at batch {base.batch_size}" if base.batch_size else " for the baseline"
    least = "at least " if lower else ""
    msg = (f"{least}{h.total_updates:.0f} updates{at_b} vs {base_updates:.0f}{at_base} "
           f"({'≥ ' if lower else ''}{ratio:.1%}): Hoffer et al. 2017 keep the number of "
           "updates")
    current = h.get("epochs") if lower and h.get("epochs") else h.epochs_done
    if m is not None:
        msg += f" (epochs × M = ×{m:g})"
        epochs_base = base.epochs if base.epochs is not None else h.epochs_done
        plan = _plan_for(base.history or h, base.batch_size, base.lr, epochs_base, b)
        target = plan.updates_new if plan.updates_new else base_updates
        if current is not None and plan.epochs_new is not None:
            fix = (f"epochs {_g(current)} → {_g(plan.epochs_new)} (×{m:g}, regime "
                   f"adaptation: {target:,.0f} updates), or accept the generalization gap")
        else:
            fix = (f"train {target:,.0f} updates (×{m:g} the epochs, regime adaptation), or "
                   "accept the generalization gap")
    else:
        unknown = "the run's batch size" if not b else "the baseline's batch size"
        msg += f"; {unknown} is unknown, so M is not checked"
        fix = (f"train {base_updates:,.0f} updates, as many as the baseline (regime "
               "adaptation), or accept the generalization gap")
    msg += f". {kind.capitalize()}: {why}; "
    if seen is not None:
        msg += f"{seen.text()}"
    else:
        msg += (f"below every share measured for {kind} runs (the smallest: "
                f"{min(r.share for r in evidence.ROWS if r.kind == kind):.1%}): outside what "
                "was measured")
    if sev == "error":
        msg += f"; error below {bound:.1%} for {kind} runs"
    if lower:
        msg += (" [the update count is a lower bound: an event file is damaged or cut "
                "(LB012), later updates were not read]")
    if how == "assumed":
        msg += (" [the reference's length is assumed: as many epochs as this run; pass "
                "--reference-epochs or --reference-updates]")
    same = ("the configured epochs already give the baseline's updates: "
            + ("restore the damaged event file (LB012) so the audit can count them"
               if lower else "the run stopped before its configured end; train it to the end"))
    return RuleResult([_finding("LB001", ctx, msg, ev, fix, ("epochs", "max_steps"), sev,
                                same_fix=same)])


def check_lr_scaled(ctx: RuleContext) -> RuleResult:
    """Peak LR / baseline LR outside [√M/2, 2M] (Hoffer √M, Goyal linear)."""
    h, base = ctx.history, ctx.baseline
    if base is None or base.lr is None:
        return RuleResult(skipped="no baseline learning rate")
    lr, how = _peak_lr(h)
    if lr is None or h.batch_size is None or base.batch_size is None:
        return RuleResult(skipped="learning rate or a batch size unknown")
    m = h.batch_size / base.batch_size
    if m <= 1:
        return RuleResult()
    k = lr / base.lr
    lo, hi = LR_LOW * math.sqrt(m), LR_HIGH * m
    if lo <= k <= hi:
        return RuleResult()
    plan = _plan_for(h, base.batch_size, base.lr, base.epochs, h.batch_size)
    fix = (f"lr {_g(lr)} → {_g(plan.lr_new)} (×√{m:g} = ×{plan.lr_multiplier:.3g}, Hoffer); "
           f"linear rule (Goyal): {_g(base.lr * m)}, with warmup")
    opt = str(h.get("optimizer", "") or "").lower()
    if "lamb" in opt:  # You et al. 2020 scale LAMB's LR by √M, with warmup
        fix = (f"lr {_g(lr)} → {_g(plan.lr_new)} (×√{m:g}, You et al. 2020's LAMB scaling), "
               "with warmup")
    elif "adam" in opt:  # the SDE rule for Adam (Malladi et al. 2022) scales by √M, not M
        fix = (f"lr {_g(lr)} → {_g(plan.lr_new)} (×√{m:g}, the Adam SDE rule of Malladi et "
               f"al. 2022, with 1 − β1 and 1 − β2 × {m:g}, ε ÷ √{m:g}; `lbconvert plan "
               "--optimizer keep` computes them), or LAMB (--optimizer lamb), with warmup")
    ev = {"peak_lr": lr, "peak_lr_source": how, "baseline_lr": base.lr, "M": m,
          "lr_ratio": round(k, 4), "allowed": [round(lo, 4), round(hi, 4)]}
    msg = (f"peak LR {_g(lr)} is ×{k:.3g} the baseline's {_g(base.lr)} at M = {m:g}; "
           f"expected ×{lo:.3g}…×{hi:.3g} (√M/2 … 2M)")
    return RuleResult([_finding("LB002", ctx, msg, ev, fix, ("lr",))])


def warmup_evidence(h: RunHistory) -> tuple[bool | None, str]:
    """Whether the run warmed up: from config warmup values, else from the logged LR."""
    for key in ("warmup_epochs", "warmup_steps", "warmup_ratio"):
        v = h.get(key)
        if v:
            return True, f"{key} = {v:g} ({h.config[key].source})"
    s = h.series.get("lr")
    if s is not None and len(s.finite()) >= 3:
        f = s.finite()
        peak = max(f.values)
        ipeak = f.values.index(peak)
        if peak > 0 and f.values[0] <= 0.5 * peak and ipeak > 0:
            return True, (f"logged LR ramps {_g(f.values[0])} → {_g(peak)} by update "
                          f"{f.steps[ipeak]:g}")
        return False, f"logged LR starts at {_g(f.values[0])}, peak {_g(peak)}"
    for key in ("warmup_epochs", "warmup_steps", "warmup_ratio"):
        if key in h.config:
            return False, f"{key} = 0 ({h.config[key].source})"
    return None, "no warmup setting and no logged LR"


def check_warmup(ctx: RuleContext) -> RuleResult:
    """No warmup at a large batch (Goyal et al. 2017: gradual warmup over 5 epochs)."""
    h, base = ctx.history, ctx.baseline
    b = h.batch_size
    if b is None:
        return RuleResult(skipped="batch size unknown")
    m = b / base.batch_size if base and base.batch_size else None
    large = (m is not None and m >= LARGE_RATIO) or (m is None and b >= LARGE_BATCH)
    if not large:
        return RuleResult()
    has, how = warmup_evidence(h)
    if has is None:
        return RuleResult(skipped=how)
    if has:
        return RuleResult()
    src = base.batch_size if base and base.batch_size else b
    lr = base.lr if base and base.lr else h.get("lr")
    plan = _plan_for(h, src, lr, base.epochs if base else h.get("epochs"), b)
    if plan.warmup_epochs is None:
        fix = ("add a linear warmup over the first 5 epochs × M (Goyal et al. 2017); the "
               "run's epochs are unknown, so pass --config or --dataset-size for the number")
    else:
        fix = (f"warmup 0 → {_g(plan.warmup_epochs)} epochs, linear from "
               f"{_g(plan.warmup_start_factor)}× the LR (Goyal et al. 2017)")
    if plan.epochs_new and plan.warmup_epochs:
        fix += (f" — {plan.warmup_epochs / plan.epochs_new:.1%} of the adapted run's "
                f"{_g(plan.epochs_new)} epochs")
    ev = {"batch_size": b, "M": m, "warmup": how}
    msg = f"no warmup at batch {b}" + (f" (M = {m:g})" if m else "") + f": {how}"
    return RuleResult([_finding("LB003", ctx, msg, ev, fix,
                                ("warmup_epochs", "warmup_steps", "warmup_ratio", "lr"))])


def _first_drop(h: RunHistory) -> float | None:
    s = h.series.get("lr")
    if s is None:
        return None
    import numpy as np

    f = s.finite()
    if not f.values:
        return None
    v = f.arrays()[1]
    best = np.maximum.accumulate(v)
    hit = np.flatnonzero((best > 0) & (v < 0.5 * best))
    return float(f.steps[hit[0]]) if hit.size else None


def check_lr_drop(ctx: RuleContext) -> RuleResult:
    """LR dropped while ‖w − w0‖ still grew ~log t (Hoffer et al. 2017, §5).

    Before the first LR drop (LR < ½ its running peak) the distance is fitted against
    ln t over the later half (in log t) of the phase; "still growing" = slope > 0 with
    t > 3 and at least half the slope of the whole phase (no saturation). Without weights
    the train loss is used (still falling ~log t), a weaker signal. With a baseline the
    finding is a warning only when the run stopped short of the baseline's distance (or
    loss) at its own drop.
    """
    h, base = ctx.history, ctx.baseline
    drop = _first_drop(h)
    if drop is None:
        return RuleResult(skipped="no LR drop in the logged LR")
    name = "weight_distance" if "weight_distance" in h.series else "train_loss"
    if name not in h.series:
        return RuleResult(skipped="neither weight distance nor train loss logged")
    s = h.series[name].finite()
    sign = 1.0 if name == "weight_distance" else -1.0
    first = next((x for x in s.steps if x > 0), None)
    if first is None or drop <= first:
        return RuleResult(skipped="LR dropped before the first logged point")
    mid = math.sqrt(first * drop)
    late = fit_log(*window(*s.arrays(), mid, drop))
    whole = fit_log(*window(*s.arrays(), first, drop))
    if late is None or whole is None:
        return RuleResult(skipped="too few points before the LR drop")
    growing = sign * late.t > T_SIGNIFICANT and sign * late.slope >= 0.5 * sign * whole.slope
    if not growing:
        return RuleResult()
    at_drop = value_at(s.steps, s.values, drop)
    ev: dict[str, Any] = {"series": s.tag or name, "lr_drop_update": drop,
                          "value_at_drop": at_drop, "slope_per_ln_t_late": late.slope,
                          "t_late": late.t, "slope_per_ln_t_phase": whole.slope}
    severity, short = "note", False
    absolute_ok = name != "weight_distance" or (
        h.distance_from_init and (base is None or base.history is None
                                  or base.history.distance_from_init))
    if name == "weight_distance" and not h.distance_from_init:
        ev["distance_origin_update"] = h.distance_origin
    if base is not None and base.history is not None and name in base.history.series \
            and absolute_ok:
        bdrop = _first_drop(base.history)
        bs = base.history.series[name].finite()
        if bdrop is not None and bs.steps:
            bval = value_at(bs.steps, bs.values, bdrop)
            ev.update({"baseline_lr_drop_update": bdrop, "baseline_value_at_drop": bval})
            short = (at_drop < 0.8 * bval) if sign > 0 else (at_drop > 1.1 * bval)
            severity = "warning" if short else "note"
            if not short:
                return RuleResult()
    weaker = name != "weight_distance"
    what = "‖w − w0‖ still growing" if not weaker else "train loss still falling"
    msg = (f"LR dropped at update {drop:g} while {what} ~log t (slope {late.slope:.3g} per "
           f"ln t, t = {late.t:.1f})")
    if short:
        msg += (f"; the baseline dropped at update {ev['baseline_lr_drop_update']:g} with "
                f"{name} {ev['baseline_value_at_drop']:.3g} vs {at_drop:.3g} here")
    if weaker:
        msg += " [weaker evidence: loss curve, no checkpoints for the weight distance]"
    if not absolute_ok:
        msg += (" [distance measured from a checkpoint after initialisation: its growth is "
                "judged, its size is not compared with the baseline's]")
    src = base.history if base is not None and base.history is not None else h
    bb = base.batch_size if base and base.batch_size else h.batch_size
    plan = _plan_for(src, bb or 1, None, base.epochs if base else h.get("epochs"),
                     h.batch_size or bb or 1) if bb else None
    # Without a baseline the plan has M = 1 and would repeat the run's own milestones; at
    # M = 1, or when the run's milestones are already the adapted ones, so would the plan.
    ms = plan.milestones_new if base is not None and plan and plan.milestones_new else None
    own = list(h.get("milestones", []) or [])
    later = ("drop the LR only once ‖w − w0‖ stops growing ~log t (save checkpoints to see "
             "it), or train longer before the drop")
    if ms and own and _same(ms, own):
        ms = None
        later = (f"the milestones {_fmt_list(own)} are already the adapted ones: " + later)
    head = f"milestones {_fmt_list(own)} →" if own else "milestones →"
    fix = f"drop the LR later: {head} {_fmt_list(ms)} epochs (regime adaptation)" if ms \
        else later
    return RuleResult([_finding("LB004", ctx, msg, ev, fix, ("milestones", "schedule"),
                                severity, same_fix=later,
                                evidence_strength="weaker" if weaker else "direct")])


def check_loss_end(ctx: RuleContext) -> RuleResult:
    """Train loss still falling at the end: slope vs ln(update) over the last 20% < 0, t < −3."""
    h, base = ctx.history, ctx.baseline
    s = h.series.get("train_loss")
    if s is None:
        return RuleResult(skipped="no train loss logged")
    f = s.finite()
    if len(f) < 5 or f.steps[-1] <= 0:
        return RuleResult(skipped="too few loss points")
    end = f.steps[-1]
    lo = f.steps[0] + (1 - END_FRACTION) * (end - f.steps[0])
    import numpy as np

    xs, ys = window(*f.arrays(), lo, end)
    if len(xs) < 4:
        xs, ys = np.asarray(f.steps[-5:], float), np.asarray(f.values[-5:], float)
    sl = fit_log(xs, ys)
    if sl is None:
        return RuleResult(skipped="too few loss points at the end")
    mean = float(ys.mean())
    change = sl.slope * math.log(xs[-1] / xs[0]) / mean if mean and xs[0] > 0 else 0.0
    if not (sl.t < -T_SIGNIFICANT and change < -MIN_FALL):
        return RuleResult()
    ev = {"window_updates": [float(xs[0]), float(xs[-1])], "points": len(xs),
          "slope_per_ln_t": sl.slope,
          "t": sl.t, "relative_change": round(change, 4)}
    b = h.batch_size
    if base is not None and b and base.batch_size and h.epochs_done:
        plan = _plan_for(h, base.batch_size, base.lr, base.epochs, b)
        fix = (f"train longer: epochs {_g(h.epochs_done)} → {_g(plan.epochs_new)} "
               "(regime adaptation)")
    elif b and h.epochs_done:
        plan = _plan_for(h, b, h.get("lr"), h.epochs_done, b, regime=2)
        fix = (f"train longer: epochs {_g(h.epochs_done)} → {_g(plan.epochs_new)} (×2), "
               "until the slope is flat")
    else:
        fix = "train longer, until the loss slope against log(update) is flat"
    msg = (f"train loss still falling at the end: {change:.1%} over updates "
           f"{xs[0]:g}–{xs[-1]:g} (slope {sl.slope:.3g} per ln t, t = {sl.t:.1f})")
    return RuleResult([_finding("LB005", ctx, msg, ev, fix, ("epochs", "max_steps"),
                                same_fix="train longer than the adapted epochs, until the "
                                         "loss slope against log(update) is flat")])


def check_bn_batch(ctx: RuleContext) -> RuleResult:
    """Per-device BN batch > 128 without ghost BN (Hoffer ghost 128; Masters & Luschi ≈ 8)."""
    h = ctx.history
    b = h.batch_size
    if b is None:
        return RuleResult(skipped="batch size unknown")
    per = b / (h.get("devices", 1) * h.get("grad_accum", 1))
    ghost = h.get("ghost_batch_size")
    if h.get("has_batchnorm") is False:
        return RuleResult(skipped="the model has no BatchNorm (no running_mean buffer in its "
                                  "checkpoints)")
    if per <= BN_BATCH_MAX or (ghost and ghost <= BN_BATCH_MAX):
        return RuleResult()
    plan = _plan_for(h, b, h.get("lr"), h.get("epochs"), b)
    ev = {"per_device_batch": per, "devices": h.get("devices", 1),
          "grad_accum": h.get("grad_accum", 1), "ghost_batch_size": ghost,
          "threshold": BN_BATCH_MAX}
    msg = (f"BatchNorm statistics over {per:g} samples per device (if the model has "
           f"BatchNorm) and no ghost batch norm ≤ {BN_BATCH_MAX}")
    fix = (f"ghost batch norm with ghost size {plan.ghost_batch_size} "
           f"(`lbconvert MODEL --target-batch {b}` rewrites BatchNorm → GhostBatchNorm)")
    return RuleResult([_finding("LB006", ctx, msg, ev, fix,
                                ("per_device_batch", "batch_size"))])


def check_gap(ctx: RuleContext) -> RuleResult:
    """Train/validation loss gap widening over the second half (Keskar et al. 2017)."""
    h = ctx.history
    tr, va = h.series.get("train_loss"), h.series.get("val_loss")
    if tr is None or va is None:
        return RuleResult(skipped="train and validation loss not both logged")
    tr, va = tr.finite(), va.finite()
    if len(va) < 6 or len(tr) < 2:
        return RuleResult(skipped="too few validation points")

    half = va.steps[len(va) // 2]
    vs, vv = va.arrays()
    steps = vs[vs >= half]
    gaps = vv[vs >= half] - value_at(*tr.arrays(), steps)
    sl = fit(steps, gaps)
    if sl is None:
        return RuleResult()
    start = sl.intercept + sl.slope * steps[0]
    endv = sl.intercept + sl.slope * steps[-1]
    growth = (endv - start) / abs(start) if start else math.inf
    if not (sl.t > T_SIGNIFICANT and growth > GAP_GROWTH):
        return RuleResult()
    ev = {"gap_start": start, "gap_end": endv, "relative_growth": round(growth, 4),
          "t": sl.t, "window_updates": [float(steps[0]), float(steps[-1])],
          "points": int(steps.size)}
    msg = (f"validation − train loss gap widened {start:.3g} → {endv:.3g} "
           f"(+{growth:.0%}) over updates {steps[0]:g}–{steps[-1]:g} (t = {sl.t:.1f})")
    fix = ("large-batch generalization gap (Keskar et al. 2017): ghost batch norm, √M LR and "
           "regime adaptation (`lbconvert plan`); or stop at the best validation loss")
    return RuleResult([_finding("LB007", ctx, msg, ev, fix, ())])


def check_lars_warmup(ctx: RuleContext) -> RuleResult:
    """LARS/LAMB without warmup: You et al. 2017 always warm up."""
    h = ctx.history
    opt = str(h.get("optimizer", "") or "").lower()
    if not any(k in opt for k in ("lars", "lamb")):
        return RuleResult()
    has, how = warmup_evidence(h)
    if has is None:
        return RuleResult(skipped=how)
    if has:
        return RuleResult()
    b = h.batch_size or 1
    plan = _plan_for(h, b, h.get("lr"), h.get("epochs"), b, regime="budget")
    ev = {"optimizer": opt, "warmup": how}
    paper = "You et al. 2020 use a warmup with LAMB" if "lamb" in opt else \
        "You et al. 2017 use a warmup with LARS"
    msg = f"{opt} without warmup ({how}): {paper}"
    fix = (f"warmup 0 → {_g(plan.warmup_epochs)} epochs (linear, then the decay schedule)"
           if plan.warmup_epochs is not None else
           "add a linear warmup (You et al. 2017), then the decay schedule")
    return RuleResult([_finding("LB008", ctx, msg, ev, fix,
                                ("warmup_epochs", "warmup_steps", "optimizer"))])


def check_nonfinite(ctx: RuleContext) -> RuleResult:
    """NaN or inf anywhere in the logged scalars."""
    h = ctx.history
    import numpy as np

    bad = {}
    for tag, s in h.raw_series.items():
        where = np.flatnonzero(~np.isfinite(s.arrays()[1]))
        if where.size:
            bad[tag] = s.steps[where[0]]
    if not bad:
        return RuleResult()
    first = min(bad.values())
    ev = {"first_update": first, "tags": sorted(bad)}
    msg = f"non-finite values (NaN/inf) from update {first:g} in {', '.join(sorted(bad))}"
    fix = ("the run diverged: lower the LR or add warmup (Goyal 2017), use LARS's trust ratio "
           "(You 2017), check for fp16 overflow")
    return RuleResult([_finding("LB009", ctx, msg, ev, fix, ("lr",))])


RULES: list[Rule] = [
    Rule("LB001", "too-few-updates", "error", "Too few updates for the batch size",
         "Hoffer et al. 2017: the generalization gap comes from fewer updates; regime "
         "adaptation trains epochs × M. Bounds measured (docs/audit-rules.md): below "
         f"{UPDATES_WARNING:.0%} of the baseline's updates a warning when the LR is scaled and "
         f"warmed up (an error below {evidence.error_share('adapted'):.1%}), an error below "
         f"{evidence.error_share('unscaled'):.0%} otherwise.", check_updates),
    Rule("LB002", "lr-not-scaled", "warning", "Learning rate not scaled with the batch",
         "Hoffer et al. 2017 √M, Goyal et al. 2017 M; outside [√M/2, 2M] is unscaled.",
         check_lr_scaled),
    Rule("LB003", "no-warmup", "warning", "No warmup at a large batch",
         "Goyal et al. 2017: gradual warmup (5 epochs) is needed at large batch.", check_warmup),
    Rule("LB004", "lr-dropped-early", "warning", "LR dropped while weights still diffused",
         "Hoffer et al. 2017: ‖w − w0‖ grows ~log t; dropping the LR early stops exploration.",
         check_lr_drop),
    Rule("LB005", "loss-still-falling", "warning", "Loss still falling at the end",
         "A significantly negative slope vs log(update) at the end means undertrained.",
         check_loss_end),
    Rule("LB006", "bn-batch-large", "warning", "BatchNorm batch per device too large",
         "Masters & Luschi 2018: BN batch ≈ 8 is best; Hoffer ghost BN of 128.",
         check_bn_batch),
    Rule("LB007", "gap-widening", "warning", "Train/validation gap widening",
         "Keskar et al. 2017: large batches reach sharp minima that generalize worse.",
         check_gap),
    Rule("LB008", "lars-no-warmup", "error", "LARS or LAMB without warmup",
         "You et al. 2017 train LARS, You et al. 2020 LAMB, with a warmup; without it early "
         "steps diverge.",
         check_lars_warmup),
    Rule("LB009", "non-finite", "error", "NaN or inf in the logs",
         "A diverged run: every later number is meaningless.", check_nonfinite),
    Rule("LB010", "diffusion-short-of-baseline", "warning", "Weights travelled less than the "
         "baseline's", "Hoffer et al. 2017: ‖w − w0‖ ~ log t; compared by updates with a "
         "monitored baseline.", lambda ctx: check_diffusion_curve(ctx, _first_drop)),
]
RULES += INPUT_RULES
RULES_BY_ID = {r.id: r for r in RULES}
