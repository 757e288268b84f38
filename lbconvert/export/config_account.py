"""The account of every config key that depends on the batch, the epochs or the step count.

DESIGN.md "Nothing silent": for each such key the rewritten config either carries a new
value (old → new, with the plan's reason) or keeps the old one, and then the account says
why and where (file:line) so the user can check it. The keys come from three places: the
keys the reader took (``cfg.keys``), the schedule lengths the plan found
(:mod:`lbconvert.plan.lengths`), and every other key whose name is an alias of a batch,
LR or length field in the one alias table (:mod:`lbconvert.config.keys`) or names a batch,
epoch, step, iteration, warmup or milestone. Every key the rewrite touches is listed too.

Statuses: ``rewritten``, ``overridden`` (the config's own warmup replaced by the plan's),
``added``, ``removed`` (a LightningCLI optimizer's old arguments), ``kept`` (read and left
on purpose, or rewritten to the same value) and ``not rewritten``. No torch here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from lbconvert.config.document import flatten
from lbconvert.config.keys import BATCH_KEYS, EVAL_SECTIONS, FIELD_KEYS, norm_key
from lbconvert.plan.types import ConfigKey

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.config.fields import TrainConfig
    from lbconvert.plan.types import Plan

__all__ = ["NOT_REWRITTEN", "config_account", "not_rewritten_lines"]

NOT_REWRITTEN = "not rewritten"

#: TrainConfig field → the kind of dependence its key has.
KIND_OF_FIELD = {"batch_size": "batch", "grad_accum": "batch", "devices": "batch", "lr": "lr",
                 "epochs": "epochs", "max_steps": "steps", "warmup_epochs": "warmup",
                 "warmup_steps": "warmup", "warmup_ratio": "warmup", "milestones": "milestones",
                 "step_size": "step size", "gamma": "decay", "poly_power": "decay",
                 "min_lr": "lr"}
#: Fields whose aliases are searched for keys the reader did not take.
_ALIAS_FIELDS = ("lr", "epochs", "max_steps", "warmup_epochs", "warmup_steps", "warmup_ratio",
                 "milestones", "step_size", "grad_accum", "min_lr")
_WORDS = ("batch", "epoch", "step", "iter", "warm", "milestone", "schedule", "t_max", "t_0",
          "t_initial",
          "learning_rate")
_EVAL = ("eval", "test", "val", "valid", "validation", "predict", "inference")
_INTERVAL = ("save", "log", "print", "checkpoint", "ckpt", "report", "every", "freq",
             "interval", "patience", "display", "snapshot")
_POSITION = ("start", "resume", "current", "global_step", "last", "first", "delay")


def _tokens(name: str) -> list[str]:
    return [t for t in name.split("_") if t]


def _is_value(v: Any) -> bool:
    """A number (not a bool), a list of numbers, or null: what a length or batch holds."""
    if v is None:
        return True
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, float)):
        return True
    if isinstance(v, str):
        try:
            float(v)
        except ValueError:
            return False
        return True
    return isinstance(v, list) and bool(v) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _alias_fields(path: tuple[str, ...]) -> list[str]:
    """Fields of the alias table whose patterns match the key path (suffix match)."""
    norm = [norm_key(c) for c in path if norm_key(c) != "init_args"]
    out = []
    for name in _ALIAS_FIELDS:
        for pattern in FIELD_KEYS[name]:
            pat = pattern.split(".")
            if norm[-len(pat):] == pat:
                out.append(name)
                break
    if any(norm[-1] == p for p, _ in BATCH_KEYS):
        out.append("batch_size")
    return out


def _looks_dependent(name: str) -> bool:
    """A key name that says it counts a batch, epochs, steps, iterations, a warmup or an LR."""
    toks = _tokens(name)
    return (any(w in name for w in _WORDS) or "lr" in toks or name in ("bs", "b")
            or name.endswith("lr"))


def _get(doc: Any, path: tuple[str, ...]) -> tuple[bool, Any]:
    node = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and \
            not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=1e-12)
    return a == b


def config_account(cfg: TrainConfig, plan: Plan, rewrite: Any) -> list[ConfigKey]:
    """Every batch/length/LR key of ``cfg``'s document and what ``rewrite`` (the
    :class:`~lbconvert.export.config_writer.Rewrite` of ``rewrite_document(cfg, plan)``) did
    with it.

    Returns rows in document order, then keys the rewrite added. Empty for a config
    without a document (flags only).
    """
    if not cfg.raw:
        return []
    field_of = {key: name for name, key in cfg.keys.items()}
    lengths = {length.key: length for length in plan.lengths}
    changed = set(rewrite.changed)
    file = cfg.path
    rows: list[ConfigKey] = []
    seen: set[str] = set()
    for path, old in flatten(cfg.raw):
        dotted = ".".join(path)
        name = norm_key(path[-1])
        found, new = _get(rewrite.doc, path)
        touched = not found or not _same(old, new) or dotted in changed
        relevant = (dotted in field_of and field_of[dotted] in KIND_OF_FIELD) or \
            dotted in lengths or (_is_value(old) and (_alias_fields(path)
                                                        or _looks_dependent(name)))
        if not (touched or relevant):
            continue
        seen.add(dotted)
        field_name = field_of.get(dotted)
        kind = _kind(field_name, dotted, path, lengths)
        line = cfg.key_lines.get(dotted)
        if touched:
            status, why = _touched(cfg, plan, rewrite, field_name, dotted, lengths, found)
            rows.append(ConfigKey(dotted, kind, old, new if found else None, status, why,
                                  file, line))
            continue
        status, why = _left(cfg, plan, field_name, dotted, path, old, lengths)
        rows.append(ConfigKey(dotted, kind, old, None if status == NOT_REWRITTEN else old,
                              status, why, file, line))
    for dotted in rewrite.changed:
        if dotted in seen or _get(cfg.raw, tuple(dotted.split(".")))[0]:
            continue
        field_name = _field_for_added(dotted)
        rows.append(ConfigKey(dotted, KIND_OF_FIELD.get(field_name or "", "other"), None,
                              rewrite.changed[dotted], "added",
                              "; ".join(filter(None, (_change_reason(plan, field_name),
                                                      _note_about(rewrite, dotted))))
                              or "added by the rewrite", file, None))
    return rows


def _kind(field_name: str | None, dotted: str, path: tuple[str, ...],
          lengths: dict[str, Any]) -> str:
    if field_name in KIND_OF_FIELD:
        return KIND_OF_FIELD[field_name]
    if dotted in lengths:
        return "length"
    aliases = _alias_fields(path)
    if aliases:
        return KIND_OF_FIELD.get(aliases[0], "other")
    name = norm_key(path[-1])
    for word, kind in (("batch", "batch"), ("warm", "warmup"), ("milestone", "milestones"),
                       ("epoch", "epochs"), ("step", "steps"), ("iter", "steps")):
        if word in name:
            return kind
    return "lr" if _looks_dependent(name) else "other"


def _field_for_added(dotted: str) -> str | None:
    name = norm_key(dotted.rsplit(".", 1)[-1])
    if "warmup" in name:
        return "warmup_epochs"
    if "accum" in name:
        return "grad_accum"
    return None


def _change_reason(plan: Plan, field_name: str | None) -> str | None:
    if field_name is None:
        return None
    wanted = "warmup_epochs" if field_name.startswith("warmup") else field_name
    if field_name in ("grad_accum", "devices"):
        wanted = "per_device_batch"
    if field_name == "betas":  # one key holds both: the plan's rows are beta1 and beta2
        return "; ".join(c.reason for c in plan.changes if c.field in ("beta1", "beta2")) or None
    for change in plan.changes:
        if change.field == wanted:
            return change.reason
    return None


def _note_about(rewrite: Any, dotted: str) -> str | None:
    for note in rewrite.notes:
        if dotted in note:
            return note
    return None


def _touched(cfg: TrainConfig, plan: Plan, rewrite: Any, field_name: str | None, dotted: str,
             lengths: dict[str, Any], found: bool) -> tuple[str, str]:
    if not found:
        return "removed", _note_about_parent(cfg, dotted)
    if norm_key(dotted) == "warmup_lr":
        return "rewritten", ("timm's warmup ramps from warmup_lr: set to the old LR "
                             f"{plan.lr_old:g}, so the ramp goes from η to the new LR (Goyal et "
                             "al. 2017)")
    why = (_change_reason(plan, field_name) or (lengths[dotted].reason if dotted in lengths
                                                 else None)
           or _note_about(rewrite, dotted) or "rewritten by the plan")
    old_found, old = _get(cfg.raw, tuple(dotted.split(".")))
    _, new = _get(rewrite.doc, tuple(dotted.split(".")))
    if old_found and _same(old, new):
        return "kept", f"same value after the plan: {why}"
    if field_name is not None and field_name.startswith("warmup") and plan.warmup_epochs_old:
        return "overridden", (f"the config's own warmup ({plan.warmup_epochs_old:g} epochs) is "
                              f"replaced by the plan's: {why}")
    if field_name == "batch_size" and cfg.batch_is == "per-device":
        why = (f"per-device batch {plan.per_device_batch} × {plan.devices} device(s) × "
               f"{plan.grad_accum} accumulation = {plan.target_batch}; {why}")
    return "rewritten", why


def _note_about_parent(cfg: TrainConfig, dotted: str) -> str:
    return (f"replaced together with its section {dotted.rsplit('.', 1)[0]} (see the rewritten "
            "config)" if "." in dotted else "removed by the rewrite")


def _left(cfg: TrainConfig, plan: Plan, field_name: str | None, dotted: str,
          path: tuple[str, ...], old: Any, lengths: dict[str, Any]) -> tuple[str, str]:
    """Status and reason for a key the rewrite left as it is."""
    name = norm_key(path[-1])
    toks = _tokens(name)
    sections = {norm_key(c) for c in path[:-1]}
    f, m = plan.epochs_factor, plan.ratio
    if dotted in lengths:
        length = lengths[dotted]
        return ("kept", length.reason) if length.new is not None else (NOT_REWRITTEN,
                                                                        length.reason)
    if field_name is not None:
        return "kept", _kept_reason(plan, field_name)
    if sections & EVAL_SECTIONS or any(t in _EVAL for t in toks):
        return NOT_REWRITTEN, "an evaluation setting: it does not change training"
    if any(t in _POSITION for t in toks):
        return NOT_REWRITTEN, ("a position in the run (where it starts or resumes), not a "
                               "length: nothing to rescale")
    if any(t in _INTERVAL for t in toks) or any(t.startswith(_INTERVAL) for t in toks):
        unit = "epochs" if "epoch" in name else "updates"
        factor = f if unit == "epochs" else f / m
        more = ("the same number of " + unit if math.isclose(factor, 1.0) else
                f"×{factor:g} the {unit}, so it fires ×{factor:g} as often per run: raise it "
                "if that matters")
        return NOT_REWRITTEN, ("an interval for logging, saving or checking, not part of the "
                               f"LR schedule; the new run has {more}")
    if old is None or (isinstance(old, (int, float)) and old <= 0):
        return NOT_REWRITTEN, f"unset ({old!r}): nothing to rescale"
    aliases = _alias_fields(path)
    if aliases:
        target = aliases[0]
        used = cfg.keys.get(target)
        if target == "min_lr" or any(t in ("min", "final", "eta") for t in toks):
            return NOT_REWRITTEN, (f"an absolute LR floor, kept: scale it ×{plan.lr_multiplier:.4g}"
                                   " too if it should stay the same fraction of the peak LR")
        if used:
            line = cfg.key_lines.get(used)
            at = f" (line {line})" if line else ""
            return NOT_REWRITTEN, f"not read: the plan uses {used}{at} for {target}"
        return NOT_REWRITTEN, (f"looks like {target} but its value {old!r} was not usable: "
                               "check it")
    if cfg.format == "timm" and name.startswith("lr_base"):
        return NOT_REWRITTEN, "timm ignores lr_base* once lr is set (the rewrite sets lr)"
    if name.endswith("lr") or name.endswith("learning_rate"):
        return NOT_REWRITTEN, (f"an LR value the plan does not read: multiply it by "
                               f"{plan.lr_multiplier:.4g} if it should scale with the peak LR")
    if "lr" in toks or "learning_rate" in name:
        return NOT_REWRITTEN, ("an LR-schedule setting lbconvert does not read: check it "
                               "against the new run's length and LR")
    return NOT_REWRITTEN, ("not a setting lbconvert knows how to rescale: check whether it "
                           f"depends on the batch (× {m:g}) or the epochs (× {f:g})")


def _kept_reason(plan: Plan, field_name: str) -> str:
    f, m = plan.epochs_factor, plan.ratio
    if field_name in ("batch_size", "grad_accum", "devices"):
        return "the target layout needs no change here" if m != 1 else "M = 1: same batch"
    if field_name == "min_lr":
        return (f"an absolute LR floor, kept: scale it ×{plan.lr_multiplier:.4g} too if it "
                "should stay the same fraction of the peak LR")
    if field_name == "lr":
        return "rule none: the LR is kept" if plan.lr_multiplier == 1 else "unchanged"
    if field_name in ("epochs", "milestones", "step_size"):
        return f"epochs × {f:g} (regime {plan.regime}): unchanged"
    if field_name == "max_steps":
        return (f"optimizer steps × {f:g}/{m:g} = {f / m:g}: the same number of updates "
                f"(regime {plan.regime})")
    if field_name.startswith("warmup"):
        return f"the plan's warmup ({plan.warmup_epochs:g} epochs) equals the config's"
    if field_name == "gamma":
        return ("the decay factor at each LR drop: the drops move with the epochs, the factor "
                "stays") if plan.schedule != "exponential" else "unchanged by the plan"
    return "unchanged by the plan"


def not_rewritten_lines(rows: list[ConfigKey]) -> list[str]:
    """One line per key left as it is for the user to check: ``key (file:line): why``."""
    return [f"{r.key} = {_short(r.old)} ({r.where or 'no line'}): {r.why}"
            for r in rows if r.status == NOT_REWRITTEN]


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
