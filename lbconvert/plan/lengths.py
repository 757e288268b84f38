"""Every schedule length a config holds, rescaled with the regime — or named for a check.

A config says how long things last in many places besides ``epochs``: a cosine's ``T_max``,
timm's ``decay_epochs`` and ``cooldown_epochs``, Lightning's ``max_epochs``, Hugging Face's
``num_training_steps``, a OneCycle ``total_steps`` … Regime adaptation (Hoffer et al. 2017)
multiplies the epochs by ``f`` (``f = M`` for ``adapt``) and so:

- a length in epochs becomes ``old × f``;
- a length in optimizer steps becomes ``old × f / M`` (each epoch has M× fewer updates),
  i.e. it is unchanged under ``adapt`` — the same number of updates.

:func:`schedule_lengths` finds them by key name anywhere in the document. Torch schedulers
count ``scheduler.step()`` calls (``T_max``, ``T_0``, ``step_size``, ``total_iters``): these
are epochs unless the config steps its scheduler per update (``interval: step``) or the value
is larger than the run has epochs; a length whose unit cannot be told, and extra warmup keys
(the plan sets warmup itself), are returned with ``new = None`` for the output to say
"not rescaled: check". Keys the plan already rewrites (``cfg.keys``) are skipped. No torch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Length", "schedule_lengths"]

#: Torch scheduler arguments counted in scheduler.step() calls: epochs or steps.
SCHEDULER_COUNTS = {"t_max", "t_0", "t_initial", "total_iters", "step_size"}
#: Lengths in epochs, by exact (normalised) key name.
EPOCH_KEYS = {"decay_epochs", "cooldown_epochs", "max_epochs", "min_epochs", "epochs",
              "num_epochs", "n_epochs", "total_epochs", "train_epochs", "num_train_epochs",
              "patience_epochs", "lr_decay_epochs", "swa_epochs", "anneal_epochs",
              "decay_epoch", "step_epochs"}
#: Lengths in optimizer steps, by exact (normalised) key name.
STEP_KEYS = {"max_steps", "num_training_steps", "total_steps", "num_steps", "train_steps",
             "max_iters", "max_iter", "total_iters", "num_iterations", "decay_steps",
             "max_updates", "total_updates", "cycle_steps"}
#: Not schedule lengths although the name looks like one: positions and logging intervals.
_NOT_LENGTHS = ("start_", "resume", "log", "save", "eval", "val_", "print", "checkpoint",
                "ckpt", "report", "sample", "test_", "every", "freq", "current_", "global_step")


@dataclass
class Length:
    """One schedule length: key path, old value, new value (None: not rescaled), unit, why."""

    key: str
    old: float
    new: float | None
    unit: str  # epochs | steps | unknown
    reason: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return asdict(self)


def _norm(key: str) -> str:
    return key.strip().lower().replace("-", "_")


def _walk(node: Any) -> Iterator[tuple[tuple[str, ...], float]]:
    """(key path, number) for every numeric leaf (bools are not numbers here)."""
    for path, value in _walk_all(node):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            yield path, float(value)


def _unit(name: str, value: float, per_update: bool, epochs_old: float | None) -> str:
    if name in SCHEDULER_COUNTS:
        if per_update:
            return "steps"
        if epochs_old is not None and value > 1.5 * epochs_old:
            return "steps"  # more scheduler steps than the run has epochs: counted per update
        return "epochs" if epochs_old is not None or value <= 1000 else "unknown"
    if name in EPOCH_KEYS or name.endswith("_epochs"):
        return "epochs"
    if name in STEP_KEYS or name.endswith(("_steps", "_iters", "_iterations", "_updates")):
        return "steps"
    return ""


def _per_update(doc: dict[str, Any]) -> bool:
    """True when the config steps its LR scheduler per update (Lightning ``interval: step``,
    timm ``sched_on_updates: true``)."""
    for path, value in _walk_all(doc):
        name = _norm(path[-1])
        if name == "interval" and str(value).lower() == "step":
            return True
        if name in ("sched_on_updates", "step_on_updates") and value is True:
            return True
    return False


def _walk_all(node: Any,
              prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(key path, value) for every leaf of nested mappings."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk_all(v, (*prefix, str(k)))
    elif prefix:
        yield prefix, node


def schedule_lengths(doc: dict[str, Any], *, handled: set[str], epochs_factor: float,
                     ratio: float, epochs_old: float | None,
                     warmup_epochs: float | None = None) -> list[Length]:
    """The schedule lengths in ``doc`` not in ``handled`` (dotted key paths), each rescaled:
    epochs × ``epochs_factor``, steps × ``epochs_factor / ratio``; ``new`` None when the
    unit is unknown or the key is an extra warmup (see the module docstring)."""
    per_update = _per_update(doc)
    steps_factor = epochs_factor / ratio
    out: list[Length] = []
    for path, value in _walk(doc):
        dotted = ".".join(path)
        name = _norm(path[-1])
        if dotted in handled or value <= 0 or not math.isfinite(value):
            continue
        if any(name.startswith(p) or p in name for p in _NOT_LENGTHS):
            continue
        unit = _unit(name, value, per_update, epochs_old)
        if not unit:
            continue
        if "warmup" in name or "warm_up" in name:
            w = "" if warmup_epochs is None else f" (the plan's warmup is {warmup_epochs:g} epochs)"
            out.append(Length(dotted, value, None, unit, f"a second warmup length{w}: set it "
                              "to the plan's warmup or remove it"))
        elif unit == "unknown":
            out.append(Length(dotted, value, None, unit, "cannot tell whether it counts epochs "
                              f"or steps: × {epochs_factor:g} if epochs, × {steps_factor:g} if "
                              "steps"))
        elif unit == "epochs":
            out.append(Length(dotted, value, value * epochs_factor, unit,
                              f"epochs × {epochs_factor:g}, with the regime"))
        else:
            out.append(Length(dotted, value, value * steps_factor, unit,
                              f"optimizer steps × {epochs_factor:g}/{ratio:g} = "
                              f"{steps_factor:g}" + (": the same number of updates"
                                                     if math.isclose(steps_factor, 1.0) else "")))
    return out
