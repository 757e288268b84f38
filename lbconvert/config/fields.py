"""TrainConfig, the normalised training config, and the value checks used when reading one.

No torch import here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class TrainConfig:
    """A training run's schedule-relevant settings, normalised across tools.

    ``batch_size`` is always the *global* batch per optimizer update
    (per_device_batch × devices × grad_accum). Epoch-valued fields are in epochs;
    ``milestones`` are epochs. ``raw`` is the parsed document and ``keys`` maps a field
    name to its key path in ``raw`` (dotted, e.g. ``"optimizer.lr"``) so a rewritten
    config keeps the user's own key names and order. Unknown keys stay in ``raw``.
    ``batch_is`` says whether the key at ``keys["batch_size"]`` holds the global or the
    per-device batch; ``step_size`` is the decay interval of a ``step`` schedule in epochs.
    ``lines`` gives the 1-based line of each field's key in ``path`` (when known), so a
    finding or a plan can point at it.
    """

    path: str | None = None
    format: str = "flags"  # timm | hf | lightning | lightning-cli | plain | flags
    file_type: str | None = None  # yaml | toml | json
    batch_size: int | None = None
    per_device_batch: int | None = None
    devices: int = 1
    grad_accum: int = 1
    lr: float | None = None
    epochs: float | None = None
    max_steps: int | None = None
    warmup_epochs: float | None = None
    warmup_steps: int | None = None
    warmup_ratio: float | None = None
    schedule: str | None = None  # step|multistep|cosine|poly|linear|constant|exponential
    milestones: list[float] = field(default_factory=list)
    gamma: float | None = None
    poly_power: float | None = None
    min_lr: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    nesterov: bool | None = None
    # Adam-family settings: (β1, β2) and ε, when the config sets them (None: the optimizer's
    # own default); keys["betas"] or keys["beta1"]/keys["beta2"] say where they are
    betas: tuple[float, float] | None = None
    eps: float | None = None
    dataset_size: int | None = None
    input_shape: tuple[int, ...] | None = None  # per sample, e.g. (3, 32, 32)
    num_classes: int | None = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)
    batch_is: str = "global"  # global | per-device: what keys["batch_size"] holds
    step_size: float | None = None
    ghost_batch_size: int | None = None
    lines: dict[str, int] = field(default_factory=dict)  # field -> line of its key in path
    # dotted key -> line, for every key of the file: the config-key account cites file:line
    key_lines: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (without ``raw``) for reports."""
        d = asdict(self)
        d.pop("raw")
        d.pop("key_lines")
        for name in ("input_shape", "betas"):
            if d[name] is not None:
                d[name] = list(d[name])
        return d


FIELD_NAMES = {f.name for f in fields(TrainConfig)} - {"sources", "notes", "raw", "keys", "path",
                                                        "format", "file_type", "lines", "file",
                                                        "key_lines"}


def is_number(v: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def as_number(v: Any) -> float | None:
    """``v`` as a finite float (numbers and numeric strings), else None."""
    if is_number(v):
        return float(v)
    if isinstance(v, str):
        try:
            x = float(v)
        except ValueError:
            return None
        return x if math.isfinite(x) else None
    return None


def as_int(v: Any) -> int | None:
    """``v`` as an int when it is a whole number, else None."""
    x = as_number(v)
    return int(x) if x is not None and x == int(x) else None


def positive_int(v: Any) -> bool:
    """A whole number > 0."""
    x = as_int(v)
    return x is not None and x > 0


def number(v: Any) -> bool:
    """Readable as a finite number."""
    return as_number(v) is not None


def positive_number(v: Any) -> bool:
    """Readable as a finite number > 0."""
    x = as_number(v)
    return x is not None and x > 0


def non_negative_number(v: Any) -> bool:
    """Readable as a finite number ≥ 0."""
    x = as_number(v)
    return x is not None and x >= 0


def string(v: Any) -> bool:
    """A non-blank string."""
    return isinstance(v, str) and v.strip() != ""


def milestone_list(v: Any) -> bool:
    """A non-empty list of numbers."""
    return isinstance(v, list) and bool(v) and all(as_number(x) is not None for x in v)


def devices_value(v: Any) -> int | None:
    """Lightning's ``devices``: an int, a digit string, or a list of device ids."""
    if isinstance(v, list):
        return len(v) or None
    n = as_int(v)
    return n if n is not None and n > 0 else None
