"""The plan's knobs as types: what :func:`lbconvert.convert` and :func:`make_plan` accept.

``PlanOptions`` groups them beside ``SmokeOptions`` and ``ExportOptions``; the ``Literal``
types let a type checker catch ``rule="sqr"`` before it runs, and :meth:`PlanOptions.check`
catches it at run time with one error naming the Python argument (and the CLI flag that sets
it). Torch-free, like the rest of the plan stage.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from lbconvert.errors import LbconvertError

#: LR scaling: √M (Hoffer et al. 2017), M (Goyal et al. 2017), or unchanged.
Rule = Literal["sqrt", "linear", "none"]
#: Epochs: same number of updates (Hoffer et al. 2017's regime adaptation), or same epochs.
RegimeName = Literal["adapt", "budget"]
#: ``auto`` picks LARS (SGD runs) or LAMB (Adam-family runs); ``keep`` keeps the config's.
OptimizerChoice = Literal["auto", "lars", "lamb", "keep"]
#: What the config's batch key means.
BatchIs = Literal["global", "per-device"]

RULES: tuple[str, ...] = get_args(Rule)
REGIMES: tuple[str, ...] = get_args(RegimeName)
OPTIMIZER_CHOICES: tuple[str, ...] = get_args(OptimizerChoice)
BATCH_IS: tuple[str, ...] = get_args(BatchIs)


def _quoted(values: tuple[str, ...]) -> str:
    items = [repr(v) for v in values]
    return ", ".join(items[:-1]) + " or " + items[-1]


def _one_of(argument: str, flag: str, value: object, allowed: tuple[str, ...],
            what: str) -> None:
    if not isinstance(value, str) or value.strip().lower() not in allowed:
        raise LbconvertError(f"{argument}={value!r} (CLI {flag}) is not {what}",
                             hint=f"use {argument}={_quoted(allowed)}")


def _positive_int(argument: str, flag: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or value < 1):
        raise LbconvertError(f"{argument}={value!r} (CLI {flag}) is not a positive integer",
                             hint=f"pass {argument}=N with N ≥ 1, or None for the plan's choice")


def check_regime(value: object) -> None:
    """``"adapt"``, ``"budget"`` or a positive factor on the epochs (a number, or its text)."""
    if isinstance(value, str) and value.strip().lower() in REGIMES:
        return
    try:
        factor = float(value) if isinstance(value, (str, int, float)) \
            and not isinstance(value, bool) else math.nan
    except ValueError:
        factor = math.nan
    if not math.isfinite(factor) or factor <= 0:
        raise LbconvertError(
            f"regime={value!r} (CLI --regime) is not 'adapt', 'budget' or a positive number",
            hint="use regime='adapt' (Hoffer et al. 2017: same updates), 'budget' (same "
                 "epochs) or a factor on the epochs, e.g. regime=2.0")


@dataclass(frozen=True)
class PlanOptions:
    """How to plan the large-batch run (see :func:`lbconvert.plan.plan.make_plan`).

    Attributes:
        rule: LR scaling ``"sqrt"`` (× √M, Hoffer et al. 2017), ``"linear"`` (× M, Goyal
            et al. 2017) or ``"none"``.
        regime: ``"adapt"`` (epochs × M: the same number of updates, Hoffer et al. 2017),
            ``"budget"`` (the same epochs) or a factor on the epochs.
        warmup: warmup length (``"5"`` epochs, ``"5%"``, ``"auto"``, ``"none"``), or None
            for Goyal et al. 2017's gradual warmup scaled for the regime.
        ghost_batch: GhostBatchNorm's ghost batch size; None for the plan's default.
        devices: data-parallel devices of the new run; None to choose.
        max_per_device: cap on the per-device batch (the rest is gradient accumulation).
        optimizer: ``"auto"`` (SGD runs get LARS, You et al. 2017; Adam-family runs get
            LAMB, You et al. 2020), ``"lars"``, ``"lamb"`` or ``"keep"``.
    """

    rule: Rule = "sqrt"
    regime: RegimeName | float = "adapt"
    warmup: str | float | None = None
    ghost_batch: int | None = None
    devices: int | None = None
    max_per_device: int | None = None
    optimizer: OptimizerChoice = "auto"

    def check(self) -> None:
        """Raise :class:`LbconvertError` naming the first bad argument (and its CLI flag)."""
        _one_of("rule", "--rule", self.rule, RULES, "a scaling rule")
        check_regime(self.regime)
        _one_of("optimizer", "--optimizer", self.optimizer, OPTIMIZER_CHOICES,
                "an optimizer choice")
        if (self.warmup is not None and not isinstance(self.warmup, (str, int, float))) \
                or isinstance(self.warmup, bool):
            raise LbconvertError(f"warmup={self.warmup!r} (CLI --warmup) is not a warmup length",
                                 hint="use e.g. warmup=5 (epochs), '5%', 'auto', 'none' or None")
        _positive_int("ghost_batch", "--ghost-batch", self.ghost_batch)
        _positive_int("devices", "--devices", self.devices)
        _positive_int("max_per_device", "--max-per-device", self.max_per_device)

    def plan_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`make_plan`, one per field."""
        return asdict(self)


def check_batch_is(value: object) -> None:
    """``batch_is``: None (the format's own convention), ``"global"`` or ``"per-device"``."""
    if value is not None:
        _one_of("batch_is", "--batch-is", value, BATCH_IS, "'global' or 'per-device'")
