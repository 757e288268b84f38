"""lbconvert: make a PyTorch model and its training config ready for a large batch.

Importing the package is cheap (no torch); the heavy parts are loaded on first use::

    from lbconvert import GhostBatchNorm, LARS, convert
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from lbconvert._version import __version__
from lbconvert.errors import LbconvertError

# name -> module; resolved lazily so `import lbconvert` never pulls in torch.
_LAZY = {
    "GhostBatchNorm": "lbconvert.nn.ghost_batchnorm",
    "LARS": "lbconvert.optim.lars",
    "convert": "lbconvert.api",
    "ConvertResult": "lbconvert.result",
    "load_config": "lbconvert.config.read",
    "TrainConfig": "lbconvert.config.read",
    "make_plan": "lbconvert.plan.plan",
    "Plan": "lbconvert.plan.plan",
}

__all__ = [
    "LbconvertError", "__version__", "GhostBatchNorm", "LARS", "convert", "ConvertResult",
    "load_config", "TrainConfig", "make_plan", "Plan",
]

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.api import convert
    from lbconvert.config.read import TrainConfig, load_config
    from lbconvert.nn.ghost_batchnorm import GhostBatchNorm
    from lbconvert.optim.lars import LARS
    from lbconvert.plan.plan import Plan, make_plan
    from lbconvert.result import ConvertResult


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lbconvert' has no attribute {name!r}")
