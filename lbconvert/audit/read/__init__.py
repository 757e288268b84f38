"""One reader module per run format; each has ``NAME``, ``LOOKED_FOR``, ``detect``, ``read``.

Order matters: the first format detected is the run's primary source. Checkpoints come
last because a run directory with logs often also holds weights (used for the distance).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

FORMATS = ("hf", "lightning", "timm", "raytune", "wandb", "tensorboard", "mlflow",
           "checkpoints")


def reader(name: str) -> ModuleType:
    """The reader module for a format name (imported on demand)."""
    return import_module(f"lbconvert.audit.read.{name}")
