"""Plan: the large-batch schedule for a target batch, as pure arithmetic (no torch).

Hoffer et al. 2017 (√M learning rate, regime adaptation: epochs × M, ghost batch 128),
Goyal et al. 2017 (linear rule, 5-epoch gradual warmup), You et al. 2017 (LARS, poly
power 2), Masters & Luschi 2018 (small BN batches).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Change:
    """One value the plan changed: ``field`` old → new, and why (rule and paper)."""

    field: str
    old: Any
    new: Any
    reason: str


@dataclass
class Plan:
    """What the converted run should train with.

    ``lr_new`` is the rule-scaled learning rate; with the LARS optimizer it is the global
    LR γ of You et al. 2017 (local LR η‖w‖/(‖∇w‖+β‖w‖) multiplies it). Epoch-valued
    fields are epochs of the *new* run unless suffixed ``_old``. ``steps_per_epoch_*`` and
    ``updates_*`` are None when the dataset size is unknown.
    """

    source_batch: int
    target_batch: int
    ratio: float  # M = target_batch / source_batch
    rule: str  # sqrt | linear | none
    regime: str  # adapt | budget | <factor>
    epochs_factor: float
    lr_old: float | None
    lr_new: float | None
    lr_multiplier: float
    epochs_old: float | None
    epochs_new: float | None
    dataset_size: int | None = None
    steps_per_epoch_old: int | None = None
    steps_per_epoch_new: int | None = None
    updates_old: int | None = None
    updates_new: int | None = None
    samples_old: int | None = None
    samples_new: int | None = None
    warmup_epochs: float = 0.0
    warmup_start_factor: float = 0.0
    schedule: str = "constant"
    milestones_old: list[float] = field(default_factory=list)
    milestones_new: list[float] = field(default_factory=list)
    gamma: float | None = None
    poly_power: float | None = None
    min_lr: float | None = None
    ghost_batch_size: int = 128
    devices: int = 1
    per_device_batch: int | None = None
    grad_accum: int = 1
    optimizer_old: str | None = None
    optimizer_new: str = "lars"  # lars | keep
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    trust_coefficient: float = 0.001
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict for ``--format json`` and report.json."""
        return asdict(self)
