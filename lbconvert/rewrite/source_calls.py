"""``F.batch_norm`` call sites found in a model's Python source, for when torch.fx cannot trace.

Module swapping cannot reach a functional call, and without a trace the surgery cannot replace
one either; it can still say where each call is (file:line), so that no site is left unsaid.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import dataclass

import torch.nn as nn

__all__ = ["SourceCall", "functional_calls"]


@dataclass(frozen=True)
class SourceCall:
    """One ``batch_norm(...)`` call in the class of the module at ``path``."""

    path: str
    cls: str
    file: str
    line: int


def _calls_in(cls: type) -> list[tuple[str, int]]:
    try:
        lines, start = inspect.getsourcelines(cls)
        file = inspect.getsourcefile(cls) or "?"
    except (OSError, TypeError):
        return []
    try:
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else getattr(fn, "id", None)
            if name == "batch_norm":
                found.append((file, start + node.lineno - 1))
    return sorted(found)


def functional_calls(model: nn.Module, is_site) -> list[SourceCall]:
    """Every ``batch_norm(...)`` call in the user-defined classes (not torch's) of every
    module of ``model`` for which ``is_site(module)`` is false (a BatchNorm module's own
    forward is its module site, not a functional one). One entry per module path and call."""
    out: list[SourceCall] = []
    for path, m in model.named_modules(remove_duplicate=False):
        if is_site(m):
            continue
        for cls in type(m).__mro__:
            if cls.__module__.startswith(("torch.", "builtins")):
                continue
            out.extend(SourceCall(path, cls.__name__, f, n) for f, n in _calls_in(cls))
    return out
