"""Parameter groups for LARS from one exclusion rule, separately for adaptation and decay.

You et al. 2017 apply the layer-wise trust ratio to every layer; in practice (and in
Goyal et al. 2017's "no weight decay on BN γ/β") biases and normalization parameters are
better left out of both the trust ratio and weight decay. The default rule here excludes
every tensor with ``ndim <= 1`` (biases, BN/LN weights and biases), every name ending in
``.bias``, and the names the model itself lists in a ``no_weight_decay()`` hook (timm
convention, e.g. ViT position embeddings).

Adaptation and decay are decided independently: excluding a parameter from the trust ratio
never removes its weight decay unless the decay rule excludes it too (peers have shipped
that bug). No torch import at module level: ``lbconvert.optim.factory`` and the CLI may import this.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from typing import Any

from lbconvert.errors import LbconvertError

#: An exclusion spec: None (default rule), False (exclude nothing), True (exclude all),
#: a glob or list of globs matched against parameter names, or ``fn(name, param) -> bool``.
ExcludeSpec = None | bool | str | Iterable[str] | Callable[[str, Any], bool]


def default_exclude(name: str, param: Any, hook_names: frozenset[str] = frozenset()) -> bool:
    """The default rule: 1-D (or 0-D) tensors, ``*.bias``, and the model's no-decay names."""
    return param.ndim <= 1 or name.endswith(".bias") or name in hook_names


def _hook_names(model: Any) -> frozenset[str]:
    """Names from the model's own ``no_weight_decay()`` hook (timm convention), if any."""
    hook = getattr(model, "no_weight_decay", None)
    if not callable(hook):
        return frozenset()
    names = hook()
    return frozenset(names or ())


def _compile_rule(spec: ExcludeSpec, hook_names: frozenset[str],
                  what: str) -> Callable[[str, Any], bool]:
    """Turn an exclusion spec into ``fn(name, param) -> bool``."""
    if spec is None:
        return lambda n, p: default_exclude(n, p, hook_names)
    if spec is True or spec is False:
        return lambda n, p: spec
    if callable(spec):
        return lambda n, p: bool(spec(n, p))
    patterns = [spec] if isinstance(spec, str) else list(spec)
    if not all(isinstance(pat, str) for pat in patterns):
        raise LbconvertError(
            f"{what} must be None, a bool, a glob, a list of globs or a callable(name, param)"
            f" (got {spec!r})"
        )
    return lambda n, p: any(fnmatch.fnmatchcase(n, pat) for pat in patterns)


def named_parameters_of(model_or_named_params: Any) -> tuple[list[tuple[str, Any]], Any]:
    """``(named params, model or None)`` from a module or an iterable of ``(name, tensor)``.

    Shared tensors appear once (first name wins), as ``nn.Module.named_parameters`` does.
    Frozen parameters (``requires_grad=False``) are left out: no optimizer updates them.
    """
    if hasattr(model_or_named_params, "named_parameters"):
        model = model_or_named_params
        named = list(model.named_parameters())
    else:
        model = None
        named = list(model_or_named_params)
        if not all(isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
                   for item in named):
            raise LbconvertError(
                "param_groups needs a model or model.named_parameters()"
                " (an iterable of (name, tensor) pairs)"
            )
    seen: set[int] = set()
    out = []
    for name, p in named:
        if id(p) in seen or not getattr(p, "requires_grad", True):
            continue
        seen.add(id(p))
        out.append((name, p))
    return out, model


def param_groups(
    model_or_named_params: Any,
    *,
    weight_decay: float,
    exclude_adapt: ExcludeSpec = None,
    exclude_decay: ExcludeSpec = None,
) -> list[dict[str, Any]]:
    """Split parameters into optimizer groups by (adapt, decay), with the exclusion rule.

    Each group is ``{"params", "param_names", "lars_adapt", "weight_decay"}``; a group
    excluded from decay has ``weight_decay = 0.0``. ``exclude_adapt`` and ``exclude_decay``
    each take: None (the default rule: ``ndim <= 1``, ``*.bias`` and the model's
    ``no_weight_decay()`` names), False (nothing excluded), True (everything excluded), a
    glob or list of globs on parameter names (``fnmatch``, e.g. ``"head.*"``), or a
    callable ``(name, param) -> bool``. A spec replaces the default; combine with
    :func:`default_exclude` in a callable to extend it. The two are independent: excluding
    a parameter from adaptation keeps its weight decay. Empty groups are dropped; order is
    (adapt+decay, adapt only, decay only, neither).
    """
    named, model = named_parameters_of(model_or_named_params)
    hooks = _hook_names(model) if model is not None else frozenset()
    skip_adapt = _compile_rule(exclude_adapt, hooks, "exclude_adapt")
    skip_decay = _compile_rule(exclude_decay, hooks, "exclude_decay")
    buckets: dict[tuple[bool, bool], dict[str, Any]] = {}
    for key in ((True, True), (True, False), (False, True), (False, False)):
        buckets[key] = {
            "params": [],
            "param_names": [],
            "lars_adapt": key[0],
            "weight_decay": float(weight_decay) if key[1] else 0.0,
        }
    for name, p in named:
        key = (not skip_adapt(name, p), not skip_decay(name, p))
        buckets[key]["params"].append(p)
        buckets[key]["param_names"].append(name)
    return [g for g in buckets.values() if g["params"]]
