"""The typed result of :func:`lbconvert.api.convert`: one field per stage.

A leaf module of its own so that the export and report stages, which read a result, do not
import the API that produces it (that was an import cycle: api → export → api).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

    from lbconvert.config.read import TrainConfig
    from lbconvert.export.written import ExportResult
    from lbconvert.model.load import LoadedModel
    from lbconvert.plan.types import Plan
    from lbconvert.report.files import ReportFiles
    from lbconvert.rewrite.surgery import SurgeryResult
    from lbconvert.rewrite.verify import Verification
    from lbconvert.smoke.diffusion import DiffusionResult


@dataclass
class ConvertResult:
    """Everything ``convert`` produced; each stage's part is None when it was skipped.

    ``surgery``, ``verification``, ``smoke``, ``export`` are the stage dataclasses; each has
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
    loaded: LoadedModel | None = None  # set when the model came from a spec string
    surgery: SurgeryResult | None = None
    verification: Verification | None = None
    smoke: DiffusionResult | None = None
    export: ExportResult | None = None
    report_files: ReportFiles | None = None
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """False when verification, the smoke verdict FAIL, or ONNX parity failed."""
        if self.verification is not None and not self.verification.passed:
            return False
        if self.export is not None and not getattr(self.export, "ok", True):
            return False
        verdict = getattr(self.smoke, "verdict", None)
        # The smoke test verifies the conversion's diffusion; FAIL is a failed check (exit 1).
        return getattr(verdict, "level", None) != "FAIL"

    def make_optimizer(self, params_or_model: Any, **kwargs: Any) -> torch.optim.Optimizer:
        """The planned optimizer (LARS, You et al. 2017, or the original one with the
        scaled LR) over ``params_or_model`` with the plan's parameter-group exclusions."""
        from lbconvert.optim.factory import make_optimizer

        return make_optimizer(params_or_model, self.plan, **kwargs)

    def make_scheduler(self, optimizer: torch.optim.Optimizer, steps_per_epoch: int, *,
                       interval: str = "step") -> Any:
        """The planned LR schedule (warmup, then the original schedule rescaled); call
        ``scheduler.step()`` every optimizer update (``interval="step"``) or every epoch."""
        from lbconvert.optim.scheduler import make_scheduler

        return make_scheduler(optimizer, self.plan, steps_per_epoch, interval=interval)
