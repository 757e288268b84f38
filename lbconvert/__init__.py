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
    "convert": "lbconvert.api",
    "ConvertResult": "lbconvert.result",
    "load_config": "lbconvert.config.read",
    "TrainConfig": "lbconvert.config.read",
    "make_plan": "lbconvert.plan.plan",
    "Plan": "lbconvert.plan.plan",
    "rewrite": "lbconvert.rewrite.surgery",
    "verify": "lbconvert.rewrite.verify",
    "make_optimizer": "lbconvert.optim.factory",
    "make_scheduler": "lbconvert.optim.scheduler",
    "PlanOptions": "lbconvert.plan.options",
    "SmokeOptions": "lbconvert.smoke.options",
    "ExportOptions": "lbconvert.export.options",
    "GhostBatchNorm": "lbconvert.nn.ghost_batchnorm",
    "LARS": "lbconvert.optim.lars",
    "LAMB": "lbconvert.optim.lamb",
}

# The stage functions in pipeline order, then the building blocks. ``make_plan`` is the plan
# stage: the name ``plan`` is the subpackage ``lbconvert.plan``.
__all__ = [
    "convert", "ConvertResult", "load_config", "TrainConfig", "make_plan", "Plan", "rewrite",
    "verify", "PlanOptions", "SmokeOptions", "ExportOptions", "make_optimizer", "make_scheduler",
    "GhostBatchNorm", "LARS", "LAMB", "LbconvertError", "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.api import convert
    from lbconvert.config.read import TrainConfig, load_config
    from lbconvert.export.options import ExportOptions
    from lbconvert.nn.ghost_batchnorm import GhostBatchNorm
    from lbconvert.optim.factory import make_optimizer
    from lbconvert.optim.lamb import LAMB
    from lbconvert.optim.lars import LARS
    from lbconvert.optim.scheduler import make_scheduler
    from lbconvert.plan.options import PlanOptions
    from lbconvert.plan.plan import Plan, make_plan
    from lbconvert.result import ConvertResult
    from lbconvert.rewrite.surgery import rewrite
    from lbconvert.rewrite.verify import verify
    from lbconvert.smoke.options import SmokeOptions


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lbconvert' has no attribute {name!r}")
