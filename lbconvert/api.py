"""The Python API the CLI calls: ``lbconvert.convert(model, config, target_batch=...)``.

Runs the stages of DESIGN.md in order — load → plan → rewrite → verify → smoke → export →
report — each a plain function over dataclasses, and collects their results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch.nn as nn

    from lbconvert.config import TrainConfig
    from lbconvert.plan import Plan


@dataclass
class ConvertResult:
    """Everything ``convert`` produced; each stage's part is None when it was skipped.

    ``surgery``, ``verification``, ``smoke``, ``export`` are the stage dataclasses
    (``lbconvert.surgery.SurgeryResult``, ``lbconvert.verify.Verification``,
    ``lbconvert.diffusion.DiffusionResult``, ``lbconvert.export.ExportResult``); each has
    ``to_dict()``. ``timings`` maps stage name → seconds.
    """

    model: nn.Module
    original: nn.Module
    plan: Plan
    config: TrainConfig
    model_spec: str = ""
    model_name: str = "model"
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    surgery: Any = None
    verification: Any = None
    smoke: Any = None
    export: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
