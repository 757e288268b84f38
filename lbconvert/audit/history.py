"""RunHistory: what one training run left on disk, normalised for the audit rules.

Every reader produces one :class:`RunHistory`. Series are keyed by a canonical name
(``train_loss``, ``val_loss``, ``lr``, ``weight_distance`` ...) and indexed by *optimizer
updates*; ``step_note`` says how the reader's own notion of "step" was mapped. Config
values each carry their source (file, key, line) so findings can point at them.
No torch here: a logs-only audit must start fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lbconvert._json import dataclass_dict, json_safe

# Canonical series names and the tags tools use for them (first match wins, lower-cased).
SERIES_ALIASES: dict[str, tuple[str, ...]] = {
    "train_loss": ("train_loss", "train/loss", "loss/train", "loss", "train_loss_step",
                   "train_loss_epoch", "training_loss", "train/loss_epoch"),
    "val_loss": ("val_loss", "eval_loss", "eval/loss", "val/loss", "loss/val", "valid_loss",
                 "validation_loss", "test_loss", "loss/test", "eval/eval_loss"),
    "lr": ("lr", "learning_rate", "train/learning_rate", "lr-sgd", "lr-lars", "lr-adam",
           "lr-adamw", "train/lr", "opt/lr", "lr/0", "lr-SGD", "lr-LARS"),
    "weight_distance": ("lbconvert/weight_distance", "weight_distance", "weights/distance",
                        "distance", "w_dist"),
    "noise_scale": ("lbconvert/noise_scale",),
    "trust_ratio_median": ("lbconvert/trust_ratio_median",),
    "grad_norm": ("grad_norm", "train/grad_norm"),
    "val_accuracy": ("val_acc", "eval_accuracy", "val/acc", "top1", "eval_top1", "val_accuracy"),
}


def canonical_name(tag: str) -> str | None:
    """The canonical series name for a logged tag, or None when it is not one we use."""
    low = tag.strip().lower()
    if low.startswith("train/lbconvert/"):  # HF's TensorBoard callback prefixes "train/"
        low = low[len("train/"):]
    for name, aliases in SERIES_ALIASES.items():
        if low in aliases:
            return name
    if low.startswith("lr-") or low.startswith("lr/"):
        return "lr"
    if low.startswith("lbconvert/weight_distance/"):  # DiffusionMonitor's per-group series
        return "weight_distance/" + low[len("lbconvert/weight_distance/"):]
    from lbconvert.audit.tags import normalised_name

    return normalised_name(low)


@dataclass
class ConfigValue:
    """One setting of the run and where it came from (``source`` is a human label)."""

    value: Any
    source: str
    file: str | None = None
    line: int | None = None
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclass_dict(self)


@dataclass
class Series:
    """A scalar series: ``steps`` in optimizer updates (float: may be fractional)."""

    name: str
    steps: list[float]
    values: list[float]
    tag: str = ""
    _arrays: Any = field(default=None, repr=False, compare=False)
    logged: int | None = None  # points logged, when this holds a thinned copy (compact())

    def __len__(self) -> int:
        return self.logged if self.logged is not None else len(self.values)

    def thinned(self, keep: int) -> Series:
        """``keep`` evenly spaced points plus the first and last; ``len`` stays the number
        logged. For a run already judged: its outputs need no more."""
        n = len(self.values)
        if n <= keep:
            return self
        idx = sorted({round(i * (n - 1) / max(1, keep - 1)) for i in range(keep)} | {n - 1})
        return Series(self.name, [self.steps[i] for i in idx], [self.values[i] for i in idx],
                      self.tag, logged=len(self))

    def arrays(self):
        """(steps, values) as float64 numpy arrays, cached: call only once reading is done."""
        if self._arrays is None or len(self._arrays[0]) != len(self.steps):
            import numpy as np

            self._arrays = (np.asarray(self.steps, dtype=np.float64),
                            np.asarray(self.values, dtype=np.float64))
        return self._arrays

    def sorted(self) -> Series:
        """The series ordered by step; a later write of the same step wins (resumed runs)."""
        import numpy as np

        if len(self.steps) < 2 or bool(np.all(np.diff(self.arrays()[0]) > 0)):
            return self
        last: dict[float, float] = {}
        for s, v in zip(self.steps, self.values):
            last[s] = v
        keys = sorted(last)
        return Series(self.name, keys, [last[k] for k in keys], self.tag)

    def finite(self) -> Series:
        """The series without NaN/inf points (a series with none is returned as is)."""
        import numpy as np

        if bool(np.isfinite(self.arrays()[1]).all()):
            return self
        pairs = [(s, v) for s, v in zip(self.steps, self.values) if math.isfinite(v)]
        return Series(self.name, [p[0] for p in pairs], [p[1] for p in pairs], self.tag)


@dataclass
class RunHistory:
    """Everything the audit knows about one run.

    ``series`` maps canonical name → :class:`Series` (steps = optimizer updates);
    ``raw_series`` keeps every logged tag (for the NaN/inf rule). ``config`` maps field
    names of :class:`lbconvert.config.read.TrainConfig` (``batch_size`` = global batch,
    ``lr``, ``epochs``, ``warmup_steps`` ...) plus ``ghost_batch_size`` to
    :class:`ConfigValue`. ``total_updates`` is the number of optimizer updates the run
    made (last logged step unless a tool records it).
    """

    path: str
    format: str
    series: dict[str, Series] = field(default_factory=dict)
    raw_series: dict[str, Series] = field(default_factory=dict)
    config: dict[str, ConfigValue] = field(default_factory=dict)
    config_file: str | None = None
    total_updates: float | None = None
    step_note: str = ""
    notes: list[str] = field(default_factory=list)
    name: str = ""  # the run's name in the audited folder (relative path, MLflow run name)
    damage: list[Any] = field(default_factory=list)  # tfrecord.Damage: where reading stopped
    tag_map: dict[str, str] = field(default_factory=dict)  # --tag: logged tag → canonical
    distance_origin: float | None = None  # update of w_0 of a checkpoint distance series
    # config files already applied (resolved paths): a file found twice is read once
    config_read: set[str] = field(default_factory=set, repr=False, compare=False)

    @property
    def distance_from_init(self) -> bool:
        """False when the weight distance is measured from a checkpoint after step 0."""
        return self.distance_origin is None or self.distance_origin == 0

    @property
    def unused_tags(self) -> list[str]:
        """Logged tags that feed no canonical series (unknown, or another tag won)."""
        used = {s.tag for s in self.series.values()}
        return sorted(t for t in self.raw_series if t not in used)

    def get(self, key: str, default: Any = None) -> Any:
        """A config value (without its source) or ``default``."""
        cv = self.config.get(key)
        return default if cv is None or cv.value is None else cv.value

    def set(self, key: str, value: Any, source: str, *, file: str | None = None,
            line: int | None = None, raw_key: str | None = None, override: bool = False) -> None:
        """Record a config value unless one is already known (first source wins)."""
        if value is None or (key in self.config and not override):
            return
        self.config[key] = ConfigValue(value, source, file, line, raw_key)

    def add_scalar(self, tag: str, step: float, value: float) -> None:
        """Append one logged scalar under its raw tag."""
        s = self.raw_series.get(tag)
        if s is None:
            s = self.raw_series[tag] = Series(tag, [], [], tag)
        s.steps.append(step)
        s.values.append(value)

    def finalize(self) -> RunHistory:
        """Sort raw series, map them to canonical names and infer ``total_updates``.

        ``tag_map`` (``--tag CANONICAL=TAG``) is applied first and wins over the aliases.
        """
        for tag in list(self.raw_series):
            self.raw_series[tag] = self.raw_series[tag].sorted()
        for tag, name in self.tag_map.items():
            s = self.raw_series.get(tag)
            if s is not None and len(s):
                self.series[name] = Series(name, s.steps, s.values, tag)
        for tag in sorted(self.raw_series, key=_alias_rank):
            if tag in self.tag_map:
                continue
            name = canonical_name(tag)
            if name and name not in self.series and len(self.raw_series[tag]):
                s = self.raw_series[tag]
                self.series[name] = Series(name, s.steps, s.values, tag)
        if self.total_updates is None:
            last = [s.steps[-1] for s in self.raw_series.values() if s.steps]
            self.total_updates = max(last) if last else None
        return self

    def compact(self, curve_points: int = 400) -> None:
        """Keep of each series its first and last points (``‖w − w0‖``: ``curve_points``),
        once the rules have judged the run: a sweep of thousands of runs then holds the
        points of the run being read, not of all runs. Point counts, last values and tags
        (what the outputs show) are unchanged."""
        thin: dict[int, Series] = {}
        for store in (self.series, self.raw_series):
            for key, s in store.items():
                keep = curve_points if s.name.startswith("weight_distance") else 1
                if id(s) not in thin:
                    thin[id(s)] = s.thinned(keep)
                store[key] = thin[id(s)]

    @property
    def batch_size(self) -> int | None:
        """Global batch per optimizer update, when known."""
        return self.get("batch_size")

    @property
    def samples_seen(self) -> float | None:
        """Updates × global batch."""
        b = self.batch_size
        return None if b is None or self.total_updates is None else self.total_updates * b

    @property
    def epochs_done(self) -> float | None:
        """Samples seen / dataset size, or the configured epochs when the size is unknown."""
        n, b = self.get("dataset_size"), self.batch_size
        if n and b and self.total_updates is not None:
            # Loaders keep the last partial batch by default: an epoch is ⌈n / B⌉ updates.
            return self.total_updates / math.ceil(n / b)
        return self.get("epochs")

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (series as point counts and last values, not every point)."""
        return {
            "path": self.path, "format": self.format, "config_file": self.config_file,
            "total_updates": self.total_updates, "samples_seen": self.samples_seen,
            "epochs_done": self.epochs_done, "step_note": self.step_note,
            "config": {k: v.to_dict() for k, v in sorted(self.config.items())},
            "series": {k: {"tag": s.tag, "points": len(s),
                           "last_step": s.steps[-1] if s.steps else None,
                           "last_value": (json_safe(s.values[-1], nonfinite="string")
                                          if s.values else None)}
                       for k, s in sorted(self.series.items())},
            "notes": list(self.notes),
            "name": self.name,
            "damage": [d.to_dict() for d in self.damage],
            "unused_tags": self.unused_tags,
            "tag_map": dict(self.tag_map),
            "distance_from_init": self.distance_from_init,
            "distance_origin": self.distance_origin,
        }


def _alias_rank(tag: str) -> tuple[int, str]:
    name = canonical_name(tag)
    if name is None:
        return (99, tag)
    aliases = SERIES_ALIASES.get(name, ())
    return (aliases.index(tag.lower()) if tag.lower() in aliases else 50, tag)

