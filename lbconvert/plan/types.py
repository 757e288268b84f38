"""The plan stage's types: :class:`Plan` (what the converted run trains with) and
:class:`Change` (one value the plan changed, with the reason). A leaf module: the planning
functions and everything that reads a plan import it, it imports none of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lbconvert._json import dataclass_dict
from lbconvert.plan.lengths import Length


@dataclass
class Change:
    """One value the plan changed: ``field`` old → new, and why (rule and paper)."""

    field: str
    old: Any
    new: Any
    reason: str


@dataclass
class ConfigKey:
    """One config key whose value depends on the batch, the epochs or the step count, and
    what the rewrite did with it.

    ``status``: ``rewritten`` (old → new), ``overridden`` (a setting of the config's own that
    the plan replaces, e.g. its warmup), ``added`` (a key the rewrite added), ``removed``,
    ``kept`` (read and left as it is on purpose, e.g. steps under regime adapt) or
    ``not rewritten`` (left as it is: ``why`` says why and what to check). ``line`` is the
    key's 1-based line in ``file`` when known.
    """

    key: str
    kind: str  # batch | lr | epochs | steps | milestones | step size | warmup | length | ...
    old: Any
    new: Any
    status: str
    why: str
    file: str | None = None
    line: int | None = None

    @property
    def where(self) -> str:
        """``file:line`` (or what of it is known)."""
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file or (f"line {self.line}" if self.line else "")


@dataclass
class Plan:
    """What the converted run should train with.

    ``lr_new`` is the rule-scaled learning rate; with the LARS optimizer it is the global
    LR γ of You et al. 2017 (local LR η‖w‖/(‖∇w‖+β‖w‖) multiplies it). Epoch-valued
    fields are epochs of the *new* run unless suffixed ``_old``. ``steps_per_epoch_*`` and
    ``updates_*`` are None when the dataset size is unknown (steps per epoch count a last
    partial batch, as a DataLoader without ``drop_last`` does).
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
    optimizer_new: str = "lars"  # lars | lamb | keep
    # which rule picked optimizer_new, in words with the paper (e.g. "Adam-family run → LAMB")
    optimizer_rule: str = ""
    # False once the model is known to have no BatchNorm (``without_batchnorm``): no ghost batch
    has_batchnorm: bool | None = None
    # Adam-family (β1, β2) and ε: the config's (None where it sets none: torch's defaults
    # apply) and the new run's (LAMB's, or the Adam SDE rule's under keep)
    betas_old: list[float] | None = None
    eps_old: float | None = None
    betas: list[float] | None = None
    eps: float | None = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    nesterov: bool = False
    trust_coefficient: float = 0.001
    trust_match: bool = True  # LARS: η matched at the first step (docs/fidelity.md)
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warmup_epochs_old: float = 0.0
    step_size_old: float | None = None
    step_size_new: float | None = None
    exp_gamma_new: float | None = None  # exponential schedules: per-epoch gamma of the new run
    max_steps_old: int | None = None
    max_steps_new: int | None = None
    lengths: list[Length] = field(default_factory=list)  # other schedule lengths in the config
    # every batch/length/LR key of the config and what the rewrite does with it
    # (lbconvert.export.config_account); empty when the plan came from flags only
    config_keys: list[ConfigKey] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict for ``--format json`` and report.json."""
        return dataclass_dict(self)
