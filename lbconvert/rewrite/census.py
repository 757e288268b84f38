"""An independent count of a model's normalization sites, to check the surgery's account.

DESIGN.md, "Nothing silent": the surgery says what it did with every BatchNorm-like site, and
that account is checked against a count taken by code that shares nothing with it. This module
imports nothing from the surgery and uses its own rules:

* **modules**: a plain walk over ``named_modules(remove_duplicate=False)`` (so a module used
  at two paths counts twice, as the surgery lists it twice). A module is BatchNorm-like when it
  is a ``torch.nn.modules.batchnorm._BatchNorm``, or a class in its MRO is *named* like one
  (``…BatchNorm``, ``…BatchNorm2d``, ``…BatchNormAct2d``: torchvision's FrozenBatchNorm2d,
  timm's BatchNormAct2d and FrozenBatchNormAct2d), or, for TorchScript modules, the module's
  ``original_name`` or TorchScript type is named so;
* **functional calls**: ``F.batch_norm`` / ``torch.batch_norm`` calls, counted in a torch.fx
  trace of the training forward in which every module above and every TorchScript module is a
  leaf, plus the calls in the TorchScript graphs of scripted modules (every method). When the
  model cannot be traced, the source of every non-torch class of every module is scanned
  instead (comments and strings ignored).
"""

from __future__ import annotations

import inspect
import io
import re
import tokenize
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["Census", "count_sites"]

_BN_NAME = re.compile(r"batchnorm(act)?(\d+d)?$", re.IGNORECASE)
_BN_CALL = re.compile(r"\bbatch_norm\s*\(")


@dataclass(frozen=True)
class Census:
    """Normalization sites found in a model by :func:`count_sites`."""

    modules: tuple[str, ...] = ()
    scripted: tuple[str, ...] = ()
    functional: int = 0
    functional_how: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total(self) -> int:
        """Module sites plus functional call sites."""
        return len(self.modules) + self.functional


def _named_like_bn(m: nn.Module) -> bool:
    if isinstance(m, torch.jit.ScriptModule):
        names = [getattr(m, "original_name", "")]
        try:
            names.append(m._c._type().name())
        except Exception:  # noqa: BLE001 - an unusual ScriptModule: its original_name decides
            pass
        return any(_BN_NAME.search(n or "") for n in names)
    return isinstance(m, _BatchNorm) or any(_BN_NAME.search(c.__name__)
                                            for c in type(m).__mro__)


class _CensusTracer(torch.fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return (_named_like_bn(m) or isinstance(m, torch.jit.ScriptModule)
                or super().is_leaf_module(m, qualname))


def _fx_calls(model: nn.Module) -> int:
    was = model.training
    try:
        model.train()
        graph = _CensusTracer().trace(model)
    finally:
        model.train(was)
    targets = (F.batch_norm, torch.batch_norm)
    return sum(n.op == "call_function" and n.target in targets for n in graph.nodes)


def _script_calls(sm: Any) -> int:
    """``batch_norm`` calls in every method graph of one TorchScript module (its children
    have graphs of their own: calls into them are CallMethod nodes, not counted here)."""
    count = 0
    for name in sm._c._method_names():
        graph = sm._c._get_method(name).graph
        count += len(graph.findAllNodes("aten::batch_norm"))
        for node in graph.findAllNodes("prim::CallFunction"):
            fn = node.inputsAt(0).node()
            if fn.kind() == "prim::Constant" and fn.hasAttribute("name") and (
                    fn.s("name") == "batch_norm"):
                count += 1
    return count


def _source_calls(cls: type) -> int:
    try:
        text = inspect.getsource(cls)
    except (OSError, TypeError):
        return 0
    kept = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type not in (tokenize.COMMENT, tokenize.STRING):
                kept.append(tok.string)
    except (tokenize.TokenError, IndentationError):
        return len(_BN_CALL.findall(text))
    return len(_BN_CALL.findall(" ".join(kept)))


def count_sites(model: nn.Module) -> Census:
    """Count the BatchNorm-like sites of ``model`` (see the module docstring for the rules).

    The model is traced, never run; its training flag is restored.
    """
    modules: list[str] = []
    scripted: list[str] = []
    script_calls = 0
    scripted_seen: set[int] = set()
    for path, m in model.named_modules(remove_duplicate=False):
        in_script = isinstance(m, torch.jit.ScriptModule)
        if _named_like_bn(m):
            modules.append(path)
            if in_script:
                scripted.append(path)
            continue
        if in_script and id(m) not in scripted_seen:
            scripted_seen.add(id(m))
            script_calls += _script_calls(m)
    notes: list[str] = []
    try:
        functional = _fx_calls(model) + script_calls
        how = "torch.fx trace" + (" and TorchScript graphs" if scripted_seen else "")
    except Exception as exc:  # noqa: BLE001 - untraceable: scan the source instead
        notes.append(f"torch.fx could not trace the model ({type(exc).__name__}); "
                     "functional calls counted in the source")
        functional = script_calls
        for _, m in model.named_modules(remove_duplicate=False):
            if _named_like_bn(m) or isinstance(m, torch.jit.ScriptModule):
                continue
            functional += sum(_source_calls(c) for c in type(m).__mro__
                              if not c.__module__.startswith(("torch.", "builtins")))
        how = "source scan" + (" and TorchScript graphs" if scripted_seen else "")
    return Census(tuple(modules), tuple(scripted), functional, how, tuple(notes))
