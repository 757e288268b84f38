"""The optimizer the converted run trains with, built from the plan.

``plan.optimizer_new == "lars"``: :class:`lbconvert.optim.lars.LARS` (You et al. 2017) with the
plan's γ = ``lr_new``, momentum, weight decay, trust coefficient and Nesterov flag, and the
exclusion rule of :mod:`lbconvert.optim.param_groups`. ``"keep"``: the user's original optimizer
(``plan.optimizer_old``) at the rule-scaled ``lr_new``. torch is imported inside the
function: ``lbconvert.api`` imports this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lbconvert.errors import LbconvertError
from lbconvert.optim.param_groups import ExcludeSpec, param_groups

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from lbconvert.plan.plan import Plan

#: optimizer_old spellings → torch.optim class name
KEEP = {
    "sgd": "SGD", "momentum": "SGD", "nesterov": "SGD",
    "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam", "lars": "LARS",
}


def make_optimizer(
    params_or_model: Any,
    plan: Plan,
    *,
    exclude_adapt: ExcludeSpec = None,
    exclude_decay: ExcludeSpec = None,
) -> torch.optim.Optimizer:
    """Build the converted run's optimizer from ``plan``: LARS (You et al. 2017, Algorithm 1:
    local_lr = η‖w‖/(‖∇w‖ + β‖w‖)) or, for ``optimizer="keep"``, the config's own optimizer
    at the planned learning rate.

    Args:
        params_or_model: an ``nn.Module`` (preferred: names drive the exclusions and the
            model's ``no_weight_decay()`` hook is honoured), ``model.named_parameters()``, or
            an iterable of tensors.
        plan: the :class:`~lbconvert.plan.plan.Plan` (``lr_new``, ``optimizer_new``,
            ``momentum``, ``weight_decay``, ``trust_coefficient``, ``trust_match``,
            ``nesterov``).
        exclude_adapt: for LARS, parameters that get no trust ratio; follows
            :func:`lbconvert.optim.param_groups.param_groups` (default: 1-D tensors, biases
            and the hook's names are neither adapted nor decayed).
        exclude_decay: parameters without weight decay. For ``keep`` the original optimizer
            decays every parameter, as the original run did, unless this is given.

    Returns:
        A ``torch.optim.Optimizer`` whose groups' ``lr`` is the planned LR.

    Raises:
        LbconvertError: the plan has no learning rate, or names an optimizer not built here.
    """

    if plan.lr_new is None:
        raise LbconvertError(
            "the plan has no learning rate (the config sets none):"
            " pass --lr or set lr in the config"
        )
    choice = (plan.optimizer_new or "lars").lower()
    if choice == "lars":
        from lbconvert.optim.lars import LARS

        return LARS(
            _named(params_or_model), lr=plan.lr_new, momentum=plan.momentum,
            weight_decay=plan.weight_decay, trust_coefficient=plan.trust_coefficient,
            nesterov=plan.nesterov and plan.momentum > 0,
            trust_match=bool(getattr(plan, "trust_match", False)),
            exclude_adapt=exclude_adapt, exclude_decay=exclude_decay,
        )
    if choice != "keep":
        raise LbconvertError(f"unknown optimizer_new {plan.optimizer_new!r}: use 'lars' or 'keep'")
    return make_original_optimizer(params_or_model, plan, lr=plan.lr_new,
                                   exclude_adapt=exclude_adapt, exclude_decay=exclude_decay)


def make_original_optimizer(
    params_or_model: Any,
    plan: Plan,
    *,
    lr: float | None = None,
    exclude_adapt: ExcludeSpec = None,
    exclude_decay: ExcludeSpec = None,
) -> torch.optim.Optimizer:
    """Build the user's original optimizer (``plan.optimizer_old``, default SGD).

    The one builder of it: ``make_optimizer`` with ``optimizer_new="keep"`` uses it at
    ``lr_new``, the smoke test's original and naive arms at ``plan.lr_old`` (the default
    ``lr``) times the proxy's scale. SGD gets the plan's momentum and Nesterov flag, RMSprop
    its momentum; every parameter is decayed by ``plan.weight_decay`` as in the original run
    unless ``exclude_decay`` is given; ``"lars"`` builds :class:`~lbconvert.optim.lars.LARS`
    with the plan's trust coefficient.

    Args:
        params_or_model: an ``nn.Module``, its ``named_parameters()``, or a list of tensors.
        plan: the plan (``optimizer_old``, ``lr_old``, momentum, weight decay, Nesterov).
        lr: the learning rate; ``plan.lr_old`` when not given.
        exclude_adapt: LARS only, as in :func:`make_optimizer`.
        exclude_decay: parameters not decayed (default: none, except for LARS's rule).
    """
    import torch

    lr = plan.lr_old if lr is None else lr
    if lr is None:
        raise LbconvertError(
            "the plan has no learning rate (the config sets none):"
            " pass --lr or set lr in the config"
        )
    old = (plan.optimizer_old or "sgd").lower()
    if old not in KEEP:
        raise LbconvertError(
            f"cannot rebuild the original optimizer {plan.optimizer_old!r}: supported are"
            f" {', '.join(sorted(KEEP))}; use --optimizer lars or build it yourself at lr"
            f" {lr}"
        )
    if KEEP[old] == "LARS":
        plan_lars = _replace(plan, optimizer_new="lars", lr_new=lr)
        return make_optimizer(params_or_model, plan_lars, exclude_adapt=exclude_adapt,
                              exclude_decay=exclude_decay)
    groups = param_groups(_named(params_or_model), weight_decay=plan.weight_decay,
                          exclude_adapt=True,
                          exclude_decay=False if exclude_decay is None else exclude_decay)
    for g in groups:
        del g["lars_adapt"]
    cls = getattr(torch.optim, KEEP[old])
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": plan.weight_decay}
    if cls is torch.optim.SGD:
        kwargs.update(momentum=plan.momentum, nesterov=plan.nesterov and plan.momentum > 0)
    elif cls is torch.optim.RMSprop:
        kwargs.update(momentum=plan.momentum)
    return cls(groups, **kwargs)


def describe_optimizer(opt: Any) -> str:
    """One line for the report: class name and the settings that matter."""
    g = opt.param_groups[0]
    name = type(opt).__name__.lower()
    parts = []
    if "trust_coefficient" in g:
        parts.append(f"η {g['trust_coefficient']:g}")
    if "momentum" in g and name != "lars":
        parts.append(f"momentum {g['momentum']:g}")
    wd = max((grp.get("weight_decay", 0.0) or 0.0) for grp in opt.param_groups)
    parts.append(f"wd {wd:g}")
    if g.get("nesterov"):
        parts.append("nesterov")
    return f"{name} ({', '.join(parts)})"


def _named(params_or_model: Any) -> Any:
    """A module or named parameters as they are; bare tensors get their index as name."""
    if hasattr(params_or_model, "named_parameters"):
        return params_or_model
    items = list(params_or_model)
    if items and all(isinstance(it, tuple) and len(it) == 2 for it in items):
        return items
    if items and all(hasattr(it, "ndim") for it in items):
        return [(str(i), p) for i, p in enumerate(items)]
    raise LbconvertError("make_optimizer needs a model, named parameters or a list of tensors")


def _replace(plan: Plan, **changes: Any) -> Plan:
    from dataclasses import replace

    return replace(plan, **changes)
