"""What the caller chooses about a smoke run (:class:`SmokeOptions`), typed and checked."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from lbconvert.errors import LbconvertError


@dataclasses.dataclass
class SmokeOptions:
    """Options of :func:`lbconvert.smoke.run.run_smoke` (the CLI's ``--smoke-*`` flags).

    Attributes:
        data: ``"synthetic"`` (default) or a data factory spec ``path.py:fn`` / ``pkg.mod:fn``
            (see :mod:`lbconvert.smoke.data`).
        device: ``auto`` (CUDA when present, else CPU with a notice), ``cpu``, ``cuda[:N]``.
        time_budget: seconds for the whole smoke test, measurement and noise scale included
            (``--smoke-time``); the arms train until it runs out.
        smoke_batch: the proxy small batch b_s (``--smoke-batch``); default from the device.
        steps: a fixed number of updates per arm instead of one sized from the budget.
        seed: seeds weights' data stream, dropout and the fit's bootstrap.
        tolerance: how far short of the original's final distance the converted run may end
            and be WARN rather than FAIL: ``ln(1 + tolerance)`` (``--tolerance``).
        calibrate: also search the converted LR multiplier (``--calibrate``).
        sharpness: add Keskar et al. 2017 sharpness of the original and naive end points.
        progress: a progress bar when ``console`` is a terminal. Off by default: a library
            draws nothing unless asked (the CLI turns it on at a terminal).
        max_micro_batch: cap on the micro-batch (gradient accumulation beyond it).
        console: a ``rich.console.Console`` for progress (default: stderr).
        nproc_per_node: processes the arms run data-parallel over (``--nproc-per-node``);
            1 runs in this process. More needs the processes started by torchrun (the CLI
            does that); under torchrun the arms are data-parallel whatever this says.
        dist_timeout: seconds a collective waits for the other ranks before the run fails
            with an error naming the rank (a failed or stuck peer never hangs the run).
        noise_scale: measure the gradient noise scale B_simple at the original weights
            (:mod:`lbconvert.smoke.noise` with :mod:`lbconvert.measure.noise_probe`; a few
            extra passes, reported).
        clock: seconds as a callable (``None``: ``time.perf_counter``); every part of the
            budget — measurement, noise scale, the arms' deadline — reads it, so a test can
            run the scheduling on simulated time.
    """

    data: str = "synthetic"
    device: str = "auto"
    time_budget: float = 60.0
    smoke_batch: int | None = None
    steps: int | None = None
    seed: int = 0
    tolerance: float = 0.2
    calibrate: bool = False
    sharpness: bool = False
    progress: bool = False
    max_micro_batch: int | None = None
    console: Any = None
    nproc_per_node: int = 1
    dist_timeout: float = 300.0
    noise_scale: bool = True
    clock: Any = None

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | SmokeOptions | None) -> SmokeOptions:
        """Options from a mapping of field names (``None`` → defaults); unknown keys are errors."""
        if values is None:
            return cls()
        if isinstance(values, SmokeOptions):
            return values
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise LbconvertError(
                f"smoke: unknown SmokeOptions field(s) {', '.join(unknown)}",
                hint=f"use {', '.join(sorted(known))}",
            )
        return cls(**dict(values))

    def check(self) -> None:
        """Raise :class:`SmokeOptionError` naming the field for a value that cannot run."""
        if not self.time_budget > 0:
            raise SmokeOptionError("time_budget", self.time_budget, "must be positive",
                                   hint="e.g. 60 (seconds)")
        if not self.tolerance > 0:
            raise SmokeOptionError("tolerance", self.tolerance, "must be positive",
                                   hint="e.g. 0.2")
        check_smoke_batch(self.smoke_batch)
        if not re.fullmatch(r"auto|(cpu|cuda|mps|xpu)(:\d+)?", self.device):
            raise SmokeOptionError("device", self.device, "is not a device",
                                   hint="use auto, cpu, cuda or cuda:N")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise SmokeOptionError("device", self.device, "needs CUDA, which is not "
                                       "available here", hint="use cpu or auto")
        if self.steps is not None and self.steps < 4:
            raise SmokeOptionError("steps", self.steps, "is too few", hint="use 4 or more")
        if self.nproc_per_node < 1:
            raise SmokeOptionError("nproc_per_node", self.nproc_per_node, "must be 1 or more",
                                   hint="e.g. 2")


class SmokeOptionError(LbconvertError):
    """A :class:`SmokeOptions` value that cannot run, named by its field: a Python caller reads
    ``time_budget=0 must be positive``; the CLI renames the field to its flag (``--smoke-time
    0 must be positive``) from ``argument``, ``value``, ``problem`` and ``hint``, so neither
    audience is told about a name it never typed."""

    def __init__(self, argument: str, value: Any, problem: str, *, hint: str):
        self.argument, self.value, self.problem = argument, value, problem
        super().__init__(f"{argument}={value!r} {problem}", hint=hint)


def check_smoke_batch(smoke_batch: int | None) -> None:
    """The proxy small batch must hold two samples: BatchNorm normalises over the batch."""
    if smoke_batch is not None and smoke_batch < 2:
        raise SmokeOptionError("smoke_batch", smoke_batch, "is too small",
                               hint="use 2 or more (BatchNorm needs two samples)")
