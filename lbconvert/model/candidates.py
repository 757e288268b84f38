"""Which model a file means, and the arguments given to it.

A file spec without a name (``models/resnet.py``) names a file, not a model: the candidates
are the file's own ``nn.Module`` classes and public functions that no other code in the file
builds on (:func:`model_candidates`); one candidate is chosen, several are listed, and a
model that needs arguments asks for ``--model-kwargs`` (:func:`parse_model_kwargs`, timm's
``key=value`` convention). No torch at import time.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from lbconvert.errors import LbconvertError

FACTORY_NAMES = ("build_model", "create_model", "get_model", "model")


def model_candidates(module: Any) -> tuple[list[Any], list[Any]]:
    """The models a file defines, as a user reads it: ``(ready, need_args)``.

    Candidates are the file's own ``nn.Module`` classes and its public module-level
    functions. A class or function that other code in the file refers to by name (a helper
    block such as ``BasicBlock``, a generic ``ResNet(block, num_blocks)`` that ``ResNet18()``
    builds on) is a part, not the model; functions named ``test*``/``main*`` are scripts and
    do not count as users. ``ready`` can be called without arguments, ``need_args`` cannot.
    """
    import torch.nn as nn

    mod_name = module.__name__
    own = {
        n: obj for n, obj in vars(module).items()
        if not n.startswith("_") and getattr(obj, "__module__", None) == mod_name
        and ((inspect.isclass(obj) and issubclass(obj, nn.Module))
             or (inspect.isfunction(obj) and not n.lower().startswith(("test", "main"))))
    }
    sources = {}
    for n, obj in vars(module).items():
        if getattr(obj, "__module__", None) == mod_name and (inspect.isclass(obj)
                                                            or inspect.isfunction(obj)):
            if n.lower().startswith(("test", "main")):
                continue
            try:
                sources[n] = inspect.getsource(obj)
            except (OSError, TypeError):
                sources[n] = ""
    used = {n for n in own
            if any(re.search(rf"\b{re.escape(n)}\b", src) for other, src in sources.items()
                   if other != n)}
    tops = [obj for n, obj in own.items() if n not in used]
    ready = [obj for obj in tops if buildable_without_args(obj)]
    need = [obj for obj in tops if not buildable_without_args(obj)
            and inspect.isclass(obj)]
    return ready, need


def choose_candidate(spec: str, module: Any, kwargs: dict[str, Any]) -> tuple[Any, str, str]:
    ready, need = model_candidates(module)
    if kwargs:  # --model-kwargs: the candidates that accept them all
        fits = [obj for obj in ready + need if accepts(obj, kwargs)]
        if len(fits) == 1:
            return fits[0], fits[0].__name__, (f"chose {fits[0].__name__}, the one model in "
                                               "the file accepting --model-kwargs")
        ready, need = [o for o in ready if o in fits], [o for o in need if o in fits]
    if len(ready) == 1:
        obj = ready[0]
        return obj, obj.__name__, (f"chose {obj.__name__}, the one model in the file "
                                   "(helper blocks used by other code are skipped)")
    names = ", ".join(o.__name__ for o in ready)
    if ready:
        raise LbconvertError(
            f"model spec {spec!r}: the file defines several models ({names})",
            hint=f"name one: {spec}:{ready[0].__name__}",
        )
    if len(need) == 1:
        required = ", ".join(required_args(need[0]))
        raise LbconvertError(
            f"model spec {spec!r}: the model {need[0].__name__} needs arguments ({required})",
            hint="pass them with --model-kwargs " + " ".join(
                f"{a}=..." for a in required_args(need[0])),
        )
    found = ", ".join(o.__name__ for o in need) or "none"
    raise LbconvertError(
        f"model spec {spec!r}: no factory named {'/'.join(FACTORY_NAMES)} and no model "
        f"buildable without arguments (models needing arguments: {found})",
        hint=f"name one explicitly: {spec}:<name> [--model-kwargs key=value ...]",
    )


def required_args(target: Any) -> list[str]:
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def accepts(target: Any, kwargs: dict[str, Any]) -> bool:
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return False
    params = sig.parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return set(required_args(target)) <= set(kwargs)
    return set(kwargs) <= set(params) and set(required_args(target)) <= set(kwargs)


def buildable_without_args(cls: type) -> bool:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty
        or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values()
    )


def parse_model_kwargs(items: list[str] | tuple[str, ...] | None) -> dict[str, Any]:
    """``["vgg_name=VGG16", "depth=3 width=0.5"]`` → ``{"vgg_name": "VGG16", "depth": 3, ...}``.

    timm's ``--model-kwargs`` convention: each ``key=value`` is read as a Python literal
    (numbers, booleans, None, lists) and otherwise kept as a string. Raises
    :class:`LbconvertError` naming the flag for an item that is not ``key=value``.
    """
    import ast

    out: dict[str, Any] = {}
    for item in items or ():
        for part in item.replace(",", " ").split() if "[" not in item else [item]:
            key, sep, value = part.partition("=")
            key = key.strip()
            if not sep or not key.isidentifier():
                raise LbconvertError(f"--model-kwargs {part!r} is not key=value",
                                     hint="e.g. --model-kwargs vgg_name=VGG16 depth=3")
            try:
                out[key] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                out[key] = value
    return out
