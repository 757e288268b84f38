"""Training-config loading: YAML / TOML / JSON, with each tool's own semantics.

Recognised: timm ``args.yaml``, Hugging Face ``TrainingArguments`` JSON, Lightning
``hparams.yaml`` and LightningCLI ``config.yaml``, and plain files. Every value remembers
where it came from (``TrainConfig.sources``) so the plan can say so.

No torch import here: ``lbconvert plan`` must start fast.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class TrainConfig:
    """A training run's schedule-relevant settings, normalised across tools.

    ``batch_size`` is always the *global* batch per optimizer update
    (per_device_batch × devices × grad_accum). Epoch-valued fields are in epochs;
    ``milestones`` are epochs. ``raw`` is the parsed document and ``keys`` maps a field
    name to its key path in ``raw`` (dotted, e.g. ``"optimizer.lr"``) so a rewritten
    config keeps the user's own key names and order. Unknown keys stay in ``raw``.
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
    schedule: str | None = None  # step | multistep | cosine | poly | linear | constant | exponential
    milestones: list[float] = field(default_factory=list)
    gamma: float | None = None
    poly_power: float | None = None
    min_lr: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    nesterov: bool | None = None
    dataset_size: int | None = None
    input_shape: tuple[int, ...] | None = None  # per sample, e.g. (3, 32, 32)
    num_classes: int | None = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    keys: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (without ``raw``) for reports."""
        d = asdict(self)
        d.pop("raw")
        if d["input_shape"] is not None:
            d["input_shape"] = list(d["input_shape"])
        return d
