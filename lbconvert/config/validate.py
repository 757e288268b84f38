"""Validation of the config values the plan uses: a value that is present but unusable is an
error naming the file, line and key and the fix — never silently dropped.

The reader (:mod:`lbconvert.config.read`) takes the best key whose value it can use and
leaves a field empty otherwise, which suits the audit (it reads whatever a run left behind).
Convert and plan act on the values, so :func:`check_values` runs after reading for them: a
non-numeric or NaN learning rate, zero or negative epochs, milestones out of order, a
momentum outside [0, 1) raise :class:`~lbconvert.errors.LbconvertError`. No torch here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from lbconvert.config.document import Document
from lbconvert.config.fields import TrainConfig, as_number
from lbconvert.config.keys import BATCH_KEYS, FIELD_KEYS, KeyLookup
from lbconvert.errors import LbconvertError

__all__ = ["CHECKS", "check_values"]


def _positive(v: float) -> bool:
    return v > 0


#: field → (what it is, test on the number, example fix). Only fields the plan uses.
CHECKS: dict[str, tuple[str, Callable[[float], bool], str]] = {
    "lr": ("a learning rate: a positive number", _positive, "0.1"),
    "epochs": ("a number of epochs: a positive number", _positive, "90"),
    "warmup_epochs": ("a warmup length in epochs: a number ≥ 0", lambda v: v >= 0, "5"),
    "gamma": ("a decay factor: a positive number", _positive, "0.1"),
    "momentum": ("a momentum in [0, 1)", lambda v: 0 <= v < 1, "0.9"),
    "weight_decay": ("a weight decay ≥ 0", lambda v: v >= 0, "1e-4"),
}
#: Override flag of each field (values given on the command line).
FLAGS = {"lr": "--lr", "epochs": "--epochs", "batch_size": "--batch-size",
         "dataset_size": "--dataset-size"}


def check_values(cfg: TrainConfig, doc: Document | None = None,
                 overrides: dict[str, Any] | None = None) -> None:
    """Raise :class:`LbconvertError` for the first unusable value the plan would use.

    Checks each field of :data:`CHECKS` at the key the reader found or — when the reader
    found none — at the best key holding a scalar it could not use (``lr: abc``,
    ``lr: .nan``, ``epochs: 0``); milestones must be numbers in increasing order. Flag
    values (``overrides``) are checked the same way and named by their flag.
    """
    for name, value in (overrides or {}).items():
        if name in CHECKS:
            _check(name, value, FLAGS.get(name, f"--{name.replace('_', '-')}"), None)
    data = doc.data if doc is not None else cfg.raw
    look = KeyLookup(data or {})
    for name in CHECKS:
        if name in (overrides or {}):
            continue
        key = cfg.keys.get(name)
        if key is None:
            hit = look.find(name, FIELD_KEYS[name], _scalar)
            if hit is None:
                continue
            key, value = hit
            if name == "epochs" and cfg.max_steps is not None:
                continue  # Lightning max_epochs: -1 with max_steps: the steps decide
        else:
            value = getattr(cfg, name)
        _check(name, value, key, _where(cfg, doc, key))
    _check_milestones(cfg, doc)
    if cfg.batch_size is None and "batch_size" not in (overrides or {}):
        # The reader found no usable batch: a key holding something else is the cause.
        hit = look.find("batch_size", tuple(p for p, _ in BATCH_KEYS), _scalar)
        if hit is not None:
            key, value = hit
            raise LbconvertError(f"{_where(cfg, doc, key)}: {key} is {value!r}, which is not a "
                                 "batch size: a whole number ≥ 1", hint=f"set {key}: 128")


def _scalar(v: Any) -> bool:
    return v is not None and not isinstance(v, (dict, list, bool))


def _where(cfg: TrainConfig, doc: Document | None, key: str) -> str:
    path = cfg.path or (doc.label if doc is not None else "") or "the config"
    line = doc.line_of(key) if doc is not None else None
    return f"{path}:{line}" if line else path


def _check(name: str, value: Any, key: str, where: str | None) -> None:
    what, ok, example = CHECKS[name]
    number = as_number(value) if not isinstance(value, float) else value
    if number is not None and not math.isnan(number) and math.isfinite(number) and ok(number):
        return
    place = f"{where}: {key}" if where else key
    fix = f"set {key}: {example}" if where else f"e.g. {key} {example}"
    raise LbconvertError(f"{place} is {value!r}, which is not {what}", hint=fix)


def _check_milestones(cfg: TrainConfig, doc: Document | None) -> None:
    key = cfg.keys.get("milestones")
    if key is None:
        return
    ms = cfg.milestones
    where = _where(cfg, doc, key)
    if any(not math.isfinite(m) or m <= 0 for m in ms):
        raise LbconvertError(f"{where}: {key} is {ms!r}: milestones must be positive epochs",
                             hint=f"e.g. {key}: [30, 60, 80]")
    if any(b <= a for a, b in zip(ms, ms[1:])):
        raise LbconvertError(
            f"{where}: {key} is {[_num(m) for m in ms]}, not in increasing order",
            hint=f"sort them: {key}: {sorted({_num(m) for m in ms})}")


def _num(v: float) -> float | int:
    return int(v) if v == int(v) else v
