"""Eager copies of TorchScript blocks, so the surgery can reach the BatchNorms inside them.

A ``torch.jit.ScriptModule`` (a legacy ``ScriptModule`` subclass with ``@script_method``, or
what ``torch.jit.script(module)`` returns) holds its submodules as compiled
``RecursiveScriptModule`` objects: a BatchNorm inside is no longer an ``nn.BatchNorm2d``, and a
scripted parent refuses a non-scripted child (``Cannot re-assign modules in a ScriptModule``).
The compiled graph is also typed against the child's class, so a GhostBatchNorm cannot be put
in its place. What can be done is to rebuild the block as the eager module it was scripted
from, when its Python class is known (``ConcreteModuleType.py_class``, or the class named by the
TorchScript type), and put that in the scripted block's place inside its eager parent:

* the parameters and buffers are copied (the input model is never changed);
* the TorchScript attributes and constants (``eps``, ``stride``, ``p``, ...) are set on it;
* a legacy ``ScriptModule`` subclass becomes a plain ``nn.Module`` class with the same methods,
  its ``@script_method`` functions restored from their Python originals.

Whether the rebuilt block computes what the scripted one did is not assumed: the verify stage
compares the converted model with the original (eval outputs, training outputs, gradients).
"""

from __future__ import annotations

import copy
import importlib
import re
from typing import Any

import torch
import torch.nn as nn

__all__ = ["is_scripted", "eager_copy", "NotConvertible"]

_MANGLE = re.compile(r"___torch_mangle_\d+\.")
# Attributes every nn.Module gets from its own __init__; copying them from TorchScript would
# overwrite the fresh dicts with TorchScript placeholders.
_MODULE_OWN = {"training", "_is_full_backward_hook"}


class NotConvertible(Exception):
    """A scripted block has no eager class to rebuild it from (the message says why)."""


def is_scripted(m: nn.Module) -> bool:
    """Whether ``m`` is a TorchScript module (scripted, traced or loaded)."""
    return isinstance(m, torch.jit.ScriptModule)


def _python_class(sm: Any) -> type:
    concrete = getattr(sm, "_concrete_type", None)
    cls = getattr(concrete, "py_class", None) if concrete is not None else None
    if isinstance(cls, type):
        return cls
    # Loaded or deep-copied modules lose py_class: resolve the TorchScript type name instead.
    qualified = _MANGLE.sub("", sm._c._type().qualified_name()).removeprefix("__torch__.")
    module_name, _, name = qualified.rpartition(".")
    try:
        found = getattr(importlib.import_module(module_name), name)
    except Exception as exc:  # noqa: BLE001 - any import failure means "no class to use"
        raise NotConvertible(f"its Python class {qualified} cannot be imported "
                             f"({type(exc).__name__})") from exc
    if not isinstance(found, type) or not issubclass(found, nn.Module):
        raise NotConvertible(f"{qualified} is not an nn.Module class")
    return found


_TWINS: dict[type, type] = {}


def _eager_class(cls: type) -> type:
    """``cls`` itself for an eager class; for a legacy ``ScriptModule`` subclass, a plain
    ``nn.Module`` class with the same methods and the ``@script_method`` originals."""
    if not issubclass(cls, torch.jit.ScriptModule):
        return cls
    if cls in _TWINS:
        return _TWINS[cls]
    body: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass in (object, nn.Module) or klass.__module__.startswith("torch."):
            continue
        body.update({k: v for k, v in vars(klass).items()
                     if k not in ("__dict__", "__weakref__", "__init__", "_methods",
                                  "_constants_set")})
    for name, stub in getattr(cls, "_methods", {}).items():
        body[name] = stub.original_method
    body["__module__"] = cls.__module__
    twin = type(cls.__name__, (nn.Module,), body)
    twin.__qualname__ = f"{cls.__qualname__}"
    _TWINS[cls] = twin
    return twin


def eager_copy(sm: nn.Module) -> nn.Module:
    """An eager ``nn.Module`` equal to scripted ``sm``, with copies of its tensors.

    Raises:
        NotConvertible: no Python class can be found for ``sm`` or one of its scripted
            descendants, or the class cannot be instantiated without its ``__init__``.
    """
    if not is_scripted(sm):
        return copy.deepcopy(sm)
    cls = _eager_class(_python_class(sm))
    try:
        new = cls.__new__(cls)
        nn.Module.__init__(new)
    except Exception as exc:  # noqa: BLE001 - a class that cannot be built bare
        raise NotConvertible(f"{cls.__name__} cannot be created without its __init__ "
                             f"({type(exc).__name__})") from exc
    params = dict(sm._parameters.items())
    buffers = dict(sm._buffers.items())
    children = dict(sm._modules.items())
    for name, p in params.items():
        new._parameters[name] = None if p is None else nn.Parameter(
            p.detach().clone(), requires_grad=p.requires_grad)
    for name, b in buffers.items():
        new._buffers[name] = None if b is None else b.detach().clone()
    for name, child in children.items():
        new._modules[name] = None if child is None else eager_copy(child)
    concrete = sm._concrete_type
    for name in concrete.get_attributes():
        if name in _MODULE_OWN or name in params or name in buffers or name in children:
            continue
        object.__setattr__(new, name, copy.deepcopy(getattr(sm, name)))
    for name, value in concrete.get_constants().items():
        object.__setattr__(new, name, copy.deepcopy(value))
    new.training = bool(sm.training)
    return new


def _under(path: str, block: str) -> bool:
    return block == "" or path == block or path.startswith(block + ".")


def replace_scripted_blocks(original: nn.Module, work: nn.Module, wanted) -> tuple[
        nn.Module, dict[str, str], dict[str, str]]:
    """Put an eager copy in place of every outermost TorchScript block of ``work`` holding a
    site for which ``wanted(path, module)`` is true.

    The copies are built from ``original`` (a deep copy of a scripted module loses its Python
    class). Returns ``(work, converted, refused)``: ``work`` (a new object when the root itself
    was scripted), and block path → class name for the blocks replaced, block path → reason
    for those that could not be.
    """
    blocks: dict[str, nn.Module] = {}
    for path, m in original.named_modules(remove_duplicate=False):
        if is_scripted(m) and not any(_under(path, b) for b in blocks):
            blocks[path] = m
    converted: dict[str, str] = {}
    refused: dict[str, str] = {}
    done: dict[int, nn.Module] = {}
    for block, sm in blocks.items():
        if not any(_under(p, block) and wanted(p, m)
                   for p, m in original.named_modules(remove_duplicate=False)):
            continue
        name = getattr(sm, "original_name", type(sm).__name__)
        try:
            eager = done[id(sm)] if id(sm) in done else eager_copy(sm)
        except NotConvertible as exc:
            refused[block] = f"{name} cannot be rebuilt as an eager module: {exc}"
            continue
        done[id(sm)] = eager
        if block == "":
            work = eager
        else:
            parent, _, attr = block.rpartition(".")
            setattr(work.get_submodule(parent), attr, eager)
        converted[block] = name
    return work, converted, refused
