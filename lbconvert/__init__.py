"""lbconvert: make a PyTorch model and its training config ready for a large batch.

Importing the package is cheap (no torch); the heavy parts are loaded on first use::

    from lbconvert import GhostBatchNorm, LARS, convert
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from lbconvert.errors import LbconvertError

__version__ = "0.1.0"

# name -> module; resolved lazily so `import lbconvert` never pulls in torch.
_LAZY = {
    "GhostBatchNorm": "lbconvert.ghost_batchnorm",
    "LARS": "lbconvert.lars",
    "convert": "lbconvert.api",
    "ConvertResult": "lbconvert.api",
    "load_config": "lbconvert.config",
    "TrainConfig": "lbconvert.config",
    "make_plan": "lbconvert.plan",
    "Plan": "lbconvert.plan",
}

__all__ = [
    "LbconvertError", "__version__", "GhostBatchNorm", "LARS", "convert", "ConvertResult",
    "load_config", "TrainConfig", "make_plan", "Plan",
]

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.api import ConvertResult, convert
    from lbconvert.config import TrainConfig, load_config
    from lbconvert.ghost_batchnorm import GhostBatchNorm
    from lbconvert.lars import LARS
    from lbconvert.plan import Plan, make_plan


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lbconvert' has no attribute {name!r}")
