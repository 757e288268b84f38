"""Shared reader helpers: config keys by alias, with the file line each came from.

Key aliases follow the tools' own spellings (timm ``args.yaml``, HF ``TrainingArguments``,
Lightning ``hparams.yaml``). The batch size is made *global* (per device × devices × grad
accumulation) and each value remembers its key and line for SARIF locations.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lbconvert.audit.history import RunHistory

# field → keys, first present wins.
KEY_ALIASES: dict[str, tuple[str, ...]] = {
    "per_device_batch": ("per_device_train_batch_size", "batch_size", "train_batch_size",
                         "batch", "bs"),
    "devices": ("world_size", "devices", "num_devices", "n_gpu", "gpus", "num_gpus"),
    "grad_accum": ("gradient_accumulation_steps", "accumulate_grad_batches", "grad_accum_steps",
                   "grad_accum"),
    "lr": ("lr", "learning_rate", "base_lr", "max_lr", "peak_lr"),
    "epochs": ("epochs", "max_epochs", "num_train_epochs", "num_epochs"),
    "max_steps": ("max_steps",),
    "warmup_epochs": ("warmup_epochs",),
    "warmup_steps": ("warmup_steps", "warmup_updates"),
    "warmup_ratio": ("warmup_ratio",),
    "optimizer": ("opt", "optimizer", "optim"),
    "schedule": ("sched", "lr_scheduler_type", "schedule", "lr_schedule", "scheduler"),
    "milestones": ("decay_milestones", "milestones", "lr_milestones"),
    "gamma": ("decay_rate", "gamma", "lr_gamma"),
    "momentum": ("momentum",),
    "weight_decay": ("weight_decay", "wd"),
    "dataset_size": ("dataset_size", "num_train_samples", "train_size", "num_samples",
                     "train_samples"),
    "ghost_batch_size": ("ghost_batch_size", "ghost_batch", "virtual_batch_size", "ghost_bn"),
}

_NUMERIC_INT = {"per_device_batch", "devices", "grad_accum", "max_steps", "warmup_steps",
                "dataset_size", "ghost_batch_size"}
_NUMERIC_FLOAT = {"lr", "epochs", "warmup_epochs", "warmup_ratio", "gamma", "momentum",
                  "weight_decay"}


MAX_DEPTH = 2  # run_dir/version_0/metrics.csv, run_dir/runs/<date>/events.out.tfevents...


def find_files(run_dir: Path, pattern: str, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Files matching ``pattern`` at most ``max_depth`` folders below ``run_dir``, sorted.

    Bounded so that pointing at a folder of many runs does not merge them into one.
    """
    out = []
    for depth in range(max_depth + 1):
        out.extend(p for p in run_dir.glob("/".join(["*"] * depth + [pattern])) if p.is_file())
    return sorted(out)


def find_line(text: str, key: str) -> int | None:
    """1-based line of ``key:`` / ``key =`` / ``"key":`` in a config file's text."""
    pat = re.compile(r'^\s*-?\s*["\']?' + re.escape(key) + r'["\']?\s*[:=]', re.MULTILINE)
    m = pat.search(text)
    return text.count("\n", 0, m.start()) + 1 if m else None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for kk, vv in _flatten(v, f"{prefix}{k}.").items():
                out.setdefault(kk, vv)
        out.setdefault(f"{prefix}{k}", v)
    return out


def _coerce(fieldname: str, value: Any) -> Any:
    if isinstance(value, bool) and fieldname != "ghost_batch_size":
        return None
    try:
        if fieldname in _NUMERIC_INT:
            if isinstance(value, (list, tuple)):
                value = len(value) if fieldname == "devices" else value[0]
            if isinstance(value, str) and fieldname == "devices" and value.isdigit():
                value = int(value)
            value = int(value) if value not in (None, "", "auto") else None
            # HF writes max_steps=-1 for "not set"; no count is negative.
            return value if value is None or value >= 0 else None
        if fieldname in _NUMERIC_FLOAT:
            return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    if fieldname == "milestones":
        return [float(x) for x in value] if isinstance(value, (list, tuple)) else None
    return str(value) if value is not None else None


def apply_config(history: RunHistory, doc: dict[str, Any], file: Path | None, label: str,
                 *, batch_is_global: bool = False) -> None:
    """Fill ``history.config`` from a parsed config document (first source wins).

    ``batch_is_global`` says the document's batch key is already the global batch; else the
    global batch is per-device × devices × grad accumulation, as the tools define it.
    """
    try:
        text = file.read_text(encoding="utf-8", errors="replace") if file else ""
    except OSError:
        text = ""
    fname = str(file) if file else None
    flat = _flatten(doc)
    lower = {k.lower(): k for k in flat}
    found: dict[str, tuple[Any, str]] = {}
    for fieldname, aliases in KEY_ALIASES.items():
        for alias in aliases:
            key = lower.get(alias) or next((lower[k] for k in lower if k.endswith("." + alias)),
                                           None)
            if key is None:
                continue
            value = _coerce(fieldname, flat[key])
            if value is not None:
                found[fieldname] = (value, key)
                break
    for fieldname, (value, key) in found.items():
        leaf = key.rsplit(".", 1)[-1]
        history.set(fieldname, value, f"{label} ({key})", file=fname,
                    line=find_line(text, leaf), raw_key=key)
    if "per_device_batch" in found:
        per, key = found["per_device_batch"]
        if batch_is_global:
            glob, how = per, "global as written"
        else:
            dev = history.get("devices", 1)
            acc = history.get("grad_accum", 1)
            glob = per * dev * acc
            how = f"{per} per device × {dev} devices × {acc} accumulation"
        history.set("batch_size", glob, f"{label} ({key}: {how})", file=fname,
                    line=find_line(text, key.rsplit('.', 1)[-1]), raw_key=key)
    if file is not None:
        history.config_file = history.config_file or str(file)


def load_structured(path: Path) -> dict[str, Any]:
    """Parse a YAML / JSON / TOML file into a dict (empty dict when it is not a mapping)."""
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8", errors="replace")
    if suffix == ".json":
        import json

        doc = json.loads(text)
    elif suffix == ".toml":
        import tomllib

        doc = tomllib.loads(text)
    else:
        doc = _yaml_load(text)
    return doc if isinstance(doc, dict) else {}


def _yaml_load(text: str) -> Any:
    import yaml

    class _Loader(yaml.SafeLoader):
        """SafeLoader that reads python/object tags (Lightning hparams.yaml) as plain data."""

    def _any(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", _any)
    _Loader.add_multi_constructor("!", _any)
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
