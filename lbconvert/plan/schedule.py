"""Learning-rate schedules as a function of training progress (pure; no torch).

The pure part (:func:`lr_multiplier`, :func:`lr_curve`) imports no torch: the LR at a
fractional epoch t is ``base_lr × multiplier(t)``, so rescaling a schedule to a new run
length is a change of the time axis (fvcore ``ParamScheduler(where)``, Composer's α(t)).

New run (``which="new"``): linear warmup from ``plan.warmup_start_factor`` over
``plan.warmup_epochs`` (Goyal et al. 2017 gradual warmup; You et al. 2017 LARS warmup),
then the original schedule rescaled to ``plan.epochs_new``:

- ``step``/``multistep``: × ``gamma`` at each epoch in ``plan.milestones_new`` (absolute
  epochs of the new run, warmup included);
- ``cosine``: half cosine from 1 to ``min_lr / base_lr`` over [warmup, epochs_new];
- ``poly``: ``(1 − p)^power``, power ``plan.poly_power`` or 2 (You et al. 2017), to
  ``min_lr`` (default 0), p the progress over [warmup, epochs_new];
- ``linear``: ``1 − p`` to ``min_lr``;
- ``exponential``: the original per-epoch ``gamma`` compounded over ``epochs_old`` epochs,
  spread over the new decay length, i.e. ``gamma^(p · epochs_old)``;
- ``constant``: 1.

Old run (``which="old"``): the same family over ``epochs_old`` with ``milestones_old`` and
no warmup (the plan does not record a warmup of the original run). Past the end of the run
the multiplier holds its end value.

:func:`lbconvert.optim.scheduler.make_scheduler` builds the equivalent
``torch.optim.lr_scheduler`` object.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from lbconvert.errors import LbconvertError

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.plan.types import Plan

SCHEDULES = ("constant", "step", "multistep", "cosine", "poly", "linear", "exponential")


def _schedule(plan: Plan) -> str:
    name = (plan.schedule or "constant").lower()
    if name not in SCHEDULES:
        raise LbconvertError(
            f"unknown LR schedule {plan.schedule!r}: use one of {', '.join(SCHEDULES)}"
        )
    return name


def _base_lr(plan: Plan, which: str) -> float | None:
    return plan.lr_new if which == "new" else plan.lr_old


def _min_factor(plan: Plan, which: str) -> float:
    base = _base_lr(plan, which)
    if not plan.min_lr or not base:
        return 0.0
    return plan.min_lr / base


def _shape(plan: Plan, which: str) -> tuple[float, float | None, list[float]]:
    """(warmup epochs, total epochs, milestones) of the chosen run."""
    if which not in ("new", "old"):
        raise LbconvertError(f"which must be 'new' or 'old' (got {which!r})")
    if which == "new":
        return plan.warmup_epochs or 0.0, plan.epochs_new, list(plan.milestones_new)
    return 0.0, plan.epochs_old, list(plan.milestones_old)


def _need_length(plan: Plan, total: float | None, which: str) -> float:
    if total is None or total <= 0:
        raise LbconvertError(
            f"the {plan.schedule} schedule needs the run length, but the plan has no"
            f" epochs_{which}: set epochs in the config or pass --epochs"
        )
    return float(total)


def decay_multiplier(plan: Plan, t_epochs: float, which: str = "new") -> float:
    """The schedule after warmup, without the warmup ramp (see the module docstring)."""
    name = _schedule(plan)
    warmup, total, milestones = _shape(plan, which)
    if name == "constant":
        return 1.0
    if name in ("step", "multistep"):
        gamma = 0.1 if plan.gamma is None else plan.gamma
        return gamma ** sum(1 for m in milestones if t_epochs >= m)
    total = _need_length(plan, total, which)
    span = total - warmup
    p = 1.0 if span <= 0 else min(max((t_epochs - warmup) / span, 0.0), 1.0)
    floor = _min_factor(plan, which)
    if name == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * p))
    if name == "poly":
        power = plan.poly_power or 2.0
        return floor + (1.0 - floor) * float((1.0 - p) ** power)
    if name == "linear":
        return floor + (1.0 - floor) * (1.0 - p)
    # exponential: keep the original total decay gamma^epochs_old over the new length
    gamma = 0.95 if plan.gamma is None else plan.gamma
    old_len = plan.epochs_old or total
    return float(gamma ** (p * old_len))


def warmup_multiplier(plan: Plan, t_epochs: float, which: str = "new") -> float:
    """Linear warmup factor from ``warmup_start_factor`` to 1 (Goyal et al. 2017, §2.2)."""
    warmup, _, _ = _shape(plan, which)
    if warmup <= 0 or t_epochs >= warmup:
        return 1.0
    start = plan.warmup_start_factor
    return start + (1.0 - start) * max(t_epochs, 0.0) / warmup


def lr_multiplier(plan: Plan, t_epochs: float, which: str = "new") -> float:
    """LR / base LR at fractional epoch ``t_epochs`` of the new or the old run."""
    return warmup_multiplier(plan, t_epochs, which) * decay_multiplier(plan, t_epochs, which)


def lr_curve(plan: Plan, which: str = "new", points: int = 200) -> list[tuple[float, float]]:
    """``points`` samples ``(epoch, lr)`` over the run, for plots of old vs new.

    ``lr`` is absolute when the plan knows the base LR, else the multiplier. Milestones and
    the warmup end are included as sample points so steps show as steps.
    """
    warmup, total, milestones = _shape(plan, which)
    if total is None or total <= 0:
        total = max([warmup, *milestones, 1.0])
    base = _base_lr(plan, which) or 1.0
    ts = {total * i / max(points - 1, 1) for i in range(points)}
    ts.update(m for m in [warmup, *milestones] if 0 <= m <= total)
    return [(t, base * lr_multiplier(plan, t, which)) for t in sorted(ts)]
