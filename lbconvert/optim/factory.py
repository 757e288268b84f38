"""The optimizer the converted run trains with, built from the plan.

``plan.optimizer_new == "lars"``: :class:`lbconvert.optim.lars.LARS` (You et al. 2017) with the
plan's γ = ``lr_new``, momentum, weight decay, trust coefficient and Nesterov flag, and the
exclusion rule of :mod:`lbconvert.optim.param_groups`. ``"lamb"``:
:class:`lbconvert.optim.lamb.LAMB` (You et al. 2020) with the plan's β, ε and weight decay and
the same exclusion rule. ``"keep"``: the user's original optimizer (``plan.optimizer_old``) at
the rule-scaled ``lr_new`` (Adam-family: with the plan's β and ε, the SDE rule of Malladi et
al. 2022). torch is imported inside the function: ``lbconvert.api`` imports this module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lbconvert.errors import LbconvertError
from lbconvert.optim.param_groups import ExcludeSpec, param_groups

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from lbconvert.plan.types import Plan

#: optimizer_old spellings → torch.optim class name
KEEP = {
    "sgd": "SGD", "momentum": "SGD", "nesterov": "SGD",
    "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop", "adagrad": "Adagrad",
    "adamax": "Adamax", "nadam": "NAdam", "radam": "RAdam", "lars": "LARS", "lamb": "LAMB",
}


def _keep_class(name: str) -> str | None:
    """torch.optim class name (or LARS/LAMB) for a config's optimizer spelling; tool spellings
    such as HF's ``adamw_torch``/``adamw_torch_fused`` or timm's ``fusedlamb`` map by family."""
    if name in KEEP:
        return KEEP[name]
    for word, cls in (("lamb", "LAMB"), ("lars", "LARS"), ("adamw", "AdamW"), ("nadam", "NAdam"),
                      ("radam", "RAdam"), ("adamax", "Adamax"), ("adam", "Adam")):
        if word in name:
            return cls
    return None


def make_optimizer(
    params_or_model: Any,
    plan: Plan,
    *,
    exclude_adapt: ExcludeSpec = None,
    exclude_decay: ExcludeSpec = None,
) -> torch.optim.Optimizer:
    """Build the converted run's optimizer from ``plan``: LARS (You et al. 2017, Algorithm 1:
    local_lr = η‖w‖/(‖∇w‖ + β‖w‖)), LAMB (You et al. 2020, Algorithm 2) or, for
    ``optimizer="keep"``, the config's own optimizer at the planned learning rate.

    Args:
        params_or_model: an ``nn.Module`` (preferred: names drive the exclusions and the
            model's ``no_weight_decay()`` hook is honoured), ``model.named_parameters()``, or
            an iterable of tensors.
        plan: the :class:`~lbconvert.plan.plan.Plan` (``lr_new``, ``optimizer_new``,
            ``momentum``, ``weight_decay``, ``trust_coefficient``, ``trust_match``,
            ``nesterov``).
        exclude_adapt: for LARS and LAMB, parameters that get no trust ratio; follows
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
    if choice == "lamb":
        return _lamb(params_or_model, plan, plan.lr_new, plan.betas, plan.eps, exclude_adapt,
                     exclude_decay)
    if choice != "keep":
        raise LbconvertError(f"unknown optimizer_new {plan.optimizer_new!r}: use 'lars', 'lamb'"
                             " or 'keep'")
    return make_original_optimizer(params_or_model, plan, lr=plan.lr_new, rescaled=True,
                                   exclude_adapt=exclude_adapt, exclude_decay=exclude_decay)


def make_original_optimizer(
    params_or_model: Any,
    plan: Plan,
    *,
    lr: float | None = None,
    rescaled: bool = False,
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
        rescaled: Adam family: use the plan's rescaled β and ε (``plan.betas``/``plan.eps``,
            the SDE rule of Malladi et al. 2022, for ``keep``) instead of the config's.
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
    cls_name = _keep_class(old)
    if cls_name is None:
        raise LbconvertError(
            f"cannot rebuild the original optimizer {plan.optimizer_old!r}: supported are"
            f" {', '.join(sorted(KEEP))}; use --optimizer lars or build it yourself at lr"
            f" {lr}"
        )
    if cls_name == "LAMB":
        return _lamb(params_or_model, plan, lr, plan.betas_old, plan.eps_old, exclude_adapt,
                     exclude_decay)
    if cls_name == "LARS":
        plan_lars = _replace(plan, optimizer_new="lars", lr_new=lr)
        return make_optimizer(params_or_model, plan_lars, exclude_adapt=exclude_adapt,
                              exclude_decay=exclude_decay)
    groups = param_groups(_named(params_or_model), weight_decay=plan.weight_decay,
                          exclude_adapt=True,
                          exclude_decay=False if exclude_decay is None else exclude_decay)
    for g in groups:
        del g["lars_adapt"]
    cls = getattr(torch.optim, cls_name)
    kwargs: dict[str, Any] = {"lr": lr, "weight_decay": plan.weight_decay}
    if "adam" in cls_name.lower():
        # the original run's β and ε; under keep at lr_new, the Adam rule's (Malladi et al.
        # 2022), which the plan computed; None where the config sets none: torch's default
        betas, eps = ((plan.betas, plan.eps) if rescaled and plan.betas is not None
                      else (plan.betas_old, plan.eps_old))
        if betas is not None:
            kwargs["betas"] = tuple(betas)
        if eps is not None:
            kwargs["eps"] = eps
    if cls is torch.optim.SGD:
        kwargs.update(momentum=plan.momentum, nesterov=plan.nesterov and plan.momentum > 0)
    elif cls is torch.optim.RMSprop:
        kwargs.update(momentum=plan.momentum)
    return cls(groups, **kwargs)


def _lamb(params_or_model: Any, plan: Plan, lr: float, betas: Any, eps: float | None,
          exclude_adapt: ExcludeSpec, exclude_decay: ExcludeSpec) -> torch.optim.Optimizer:
    from lbconvert.optim.lamb import LAMB
    from lbconvert.plan.plan import ADAM_BETAS, LAMB_EPS

    return LAMB(_named(params_or_model), lr=lr, betas=tuple(betas or ADAM_BETAS),
                eps=LAMB_EPS if eps is None else eps, weight_decay=plan.weight_decay,
                exclude_adapt=exclude_adapt, exclude_decay=exclude_decay)


def describe_optimizer(opt: Any) -> str:
    """One line for the report: class name and the settings that matter."""
    g = opt.param_groups[0]
    name = type(opt).__name__.lower()
    parts = []
    if "trust_coefficient" in g:
        parts.append(f"η {g['trust_coefficient']:g}")
    if "momentum" in g and name != "lars":
        parts.append(f"momentum {g['momentum']:g}")
    if "betas" in g:
        parts.append(f"β ({g['betas'][0]:g}, {g['betas'][1]:g}), ε {g['eps']:g}")
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
