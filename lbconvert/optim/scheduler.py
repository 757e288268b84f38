"""The torch edge of the LR schedule: the plan's pure schedule as a ``torch.optim.lr_scheduler``.

The multiplier itself lives in :mod:`lbconvert.plan.schedule` (no torch); this module only
composes the built-in schedulers that reproduce it.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from lbconvert.errors import LbconvertError
from lbconvert.plan.schedule import _min_factor, _need_length, _schedule, _shape, lr_multiplier

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from lbconvert.plan.types import Plan


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    plan: Plan,
    steps_per_epoch: int,
    *,
    interval: str = "step",
) -> torch.optim.lr_scheduler.LRScheduler:
    """The new run's schedule as a ``torch.optim.lr_scheduler`` object.

    ``interval="step"``: call ``scheduler.step()`` after every optimizer step;
    ``interval="epoch"``: once per epoch (``steps_per_epoch`` is then not used for the time
    axis). The returned object carries ``lbconvert_interval`` saying which. Built from the
    built-ins — ``LinearLR`` warmup, then ``MultiStepLR`` / ``CosineAnnealingLR`` /
    ``PolynomialLR`` / ``LinearLR`` / ``ExponentialLR`` / ``ConstantLR``, chained by
    ``SequentialLR`` — and a ``LambdaLR`` over :func:`lr_multiplier` only where none fits
    (warmup from 0, or a ``min_lr`` floor on poly/linear). Epoch boundaries (warmup end,
    milestones) are rounded to whole steps: a milestone at epoch m takes effect at step
    ``ceil(m × steps_per_epoch)``. Base LRs are the optimizer groups' current LRs.

    Args:
        optimizer: the optimizer whose groups' LRs are the planned peak LRs (e.g. from
            :func:`lbconvert.optim.factory.make_optimizer`).
        plan: the :class:`~lbconvert.plan.plan.Plan` (warmup, schedule family, milestones,
            epochs of the new run).
        steps_per_epoch: optimizer updates per epoch of the new run.
        interval: ``"step"`` or ``"epoch"``: how often the caller calls ``step()``.

    Returns:
        A ``torch.optim.lr_scheduler.LRScheduler`` whose LR at every update equals
        ``base_lr × lbconvert.plan.schedule.lr_multiplier(plan, t)``.
    """
    from torch.optim import lr_scheduler as S

    if interval not in ("step", "epoch"):
        raise LbconvertError(f"interval must be 'step' or 'epoch' (got {interval!r})")
    if interval == "step" and (not isinstance(steps_per_epoch, int) or steps_per_epoch < 1):
        raise LbconvertError(
            f"steps_per_epoch must be a positive integer (got {steps_per_epoch!r})"
        )
    units = steps_per_epoch if interval == "step" else 1
    name = _schedule(plan)
    warmup_e, total_e, milestones = _shape(plan, "new")
    w = int(round(warmup_e * units))
    floor = _min_factor(plan, "new")

    def lam(k: int) -> float:
        return lr_multiplier(plan, k / units, "new")

    main: Any
    if name == "constant":
        main = S.ConstantLR(optimizer, factor=1.0, total_iters=0)
    elif name in ("step", "multistep"):
        gamma = 0.1 if plan.gamma is None else plan.gamma
        steps = [math.ceil(m * units - 1e-9) - w for m in milestones]
        if any(s < 0 for s in steps):  # a milestone inside the warmup: no built-in fits
            return _tag(S.LambdaLR(optimizer, lam), interval)
        main = S.MultiStepLR(optimizer, milestones=steps, gamma=gamma)
    else:
        length = _need_length(plan, total_e, "new")
        total = int(round(length * units))
        span = max(total - w, 1)
        if name == "cosine":
            base = [g["lr"] for g in optimizer.param_groups]
            if floor and len(set(base)) > 1:
                return _tag(S.LambdaLR(optimizer, lam), interval)
            main = S.CosineAnnealingLR(optimizer, T_max=span, eta_min=floor * base[0])
        elif name == "poly" and not floor:
            main = S.PolynomialLR(optimizer, total_iters=span, power=plan.poly_power or 2.0)
        elif name == "linear" and not floor:
            main = S.LinearLR(optimizer, start_factor=1.0, end_factor=0.0, total_iters=span)
        elif name == "exponential":
            gamma = 0.95 if plan.gamma is None else plan.gamma
            main = S.ExponentialLR(optimizer, gamma=gamma ** ((plan.epochs_old or length) / span))
        else:
            return _tag(S.LambdaLR(optimizer, lam), interval)
    if w <= 0:
        return _tag(main, interval)
    start = plan.warmup_start_factor
    if start <= 0:
        warm = S.LambdaLR(optimizer, lambda k: k / w)  # LinearLR refuses start_factor 0
    else:
        warm = S.LinearLR(optimizer, start_factor=min(start, 1.0), end_factor=1.0, total_iters=w)
    return _tag(S.SequentialLR(optimizer, [warm, main], milestones=[w]), interval)


def _tag(scheduler: Any, interval: str) -> Any:
    scheduler.lbconvert_interval = interval
    return scheduler
