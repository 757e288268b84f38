"""GhostBatchNorm variants of BatchNorm subclasses: :func:`ghost_class_for`.

A BatchNorm subclass with behaviour of its own (timm's ``BatchNormAct2d`` applies drop and an
activation after normalizing) cannot simply become :class:`GhostBatchNorm`: that would drop its
extras. ``ghost_class_for(cls)`` builds a class that is both ``cls`` and a GhostBatchNorm and
computes statistics per ghost batch (Hoffer et al. 2017, Algorithm 1): when ``cls`` has a
forward of its own, that forward runs once per ghost batch (:class:`GhostChunkedMixin`);
otherwise GhostBatchNorm's forward is used directly. The rewrite stage gives a module this
class in place, so its hooks, submodules and state-dict keys stay as they were.
"""

from __future__ import annotations

import sys
from typing import Any

import torch
from torch.nn.modules.batchnorm import _BatchNorm

from lbconvert.nn.ghost_batchnorm import GhostBatchNorm

__all__ = ["GhostChunkedMixin", "ghost_class_for"]


class GhostChunkedMixin:
    """Runs a BatchNorm subclass's own forward once per ghost batch in training.

    Exact for subclasses whose additions act per sample (activation, dropout, drop-path), as
    timm's BatchNormAct2d does; the running statistics are updated by their own forward, ghost
    batch by ghost batch.
    """

    ghost_batch_size: int

    def forward(self, input: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        parent = super().forward  # type: ignore[misc]
        if not self.training or input.shape[0] <= self.ghost_batch_size:  # type: ignore[attr-defined]
            return parent(input, *args, **kwargs)
        return torch.cat([parent(c, *args, **kwargs) for c in input.split(self.ghost_batch_size)])


_GHOST_CLASSES: dict[type, type] = {}


def ghost_class_for(cls: type) -> type:
    """A subclass of BatchNorm subclass ``cls`` that computes ghost-batch statistics.

    It keeps ``cls``'s forward (and so its extra behaviour) and is also a GhostBatchNorm for
    ``isinstance``. Cached, and published in this module under a unique name so that pickling
    the class by reference works within a process.
    """
    if cls in _GHOST_CLASSES:
        return _GHOST_CLASSES[cls]
    name = f"Ghost{cls.__name__}"
    own_forward = cls.forward is not _BatchNorm.forward  # type: ignore[attr-defined]
    bases = (GhostChunkedMixin, cls, GhostBatchNorm) if own_forward else (cls, GhostBatchNorm)
    body: dict[str, Any] = {"__module__": __name__}
    if not own_forward:
        body["forward"] = GhostBatchNorm.forward
        body["_check_input_dim"] = cls._check_input_dim  # type: ignore[attr-defined]
    new = type(name, bases, body)
    unique = f"_{name}_{len(_GHOST_CLASSES)}"
    new.__qualname__ = unique
    setattr(sys.modules[__name__], unique, new)
    _GHOST_CLASSES[cls] = new
    return new
