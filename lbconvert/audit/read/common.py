"""Shared reader helpers: run configs through lbconvert's one config reader, file search.

Configs are read by :mod:`lbconvert.config` (the same loader, alias table and batch
arithmetic as ``convert``/``plan``): the batch size is made *global* (per device × devices
× grad accumulation, as each tool defines it) and each value keeps its key, file and line
for SARIF locations.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import Any

from lbconvert.audit.history import RunHistory
from lbconvert.config.document import Document, find_line, load_document, mapping_document
from lbconvert.config.read import config_from_document

__all__ = ["apply_config", "apply_config_file", "config_document", "find_files", "find_line",
           "load_document", "mapping_document"]

# TrainConfig fields the audit keeps (batch_size, per_device_batch handled apart).
_FIELDS = ("devices", "grad_accum", "lr", "epochs", "max_steps", "warmup_epochs",
           "warmup_steps", "warmup_ratio", "optimizer", "schedule", "milestones", "gamma",
           "momentum", "weight_decay", "dataset_size", "ghost_batch_size")


MAX_DEPTH = 2  # run_dir/version_0/metrics.csv, run_dir/runs/<date>/events.out.tfevents...


def find_files(run_dir: Path, pattern: str, max_depth: int = MAX_DEPTH) -> list[Path]:
    """Files matching ``pattern`` at most ``max_depth`` folders below ``run_dir``, sorted.

    Bounded so that pointing at a folder of many runs does not merge them into one. One
    ``scandir`` per folder (pathlib's glob costs more, and a sweep calls this per run).
    """
    out: list[Path] = []
    level = [run_dir]
    for depth in range(max_depth + 1):
        below: list[Path] = []
        for folder in level:
            try:
                with os.scandir(folder) as it:
                    for e in it:
                        try:
                            if e.is_file():
                                if fnmatch.fnmatchcase(e.name, pattern):
                                    out.append(folder / e.name)
                            elif depth < max_depth and e.is_dir():
                                below.append(folder / e.name)
                        except OSError:
                            continue
            except OSError:
                continue
        level = below
    return sorted(out)


def config_document(data: dict[str, Any] | Document, label: str) -> Document:
    """A Document for an in-memory config (a dict), or ``data`` itself when it is one."""
    return data if isinstance(data, Document) else mapping_document(data, label)


def apply_config(history: RunHistory, doc: Document, label: str | None = None, *,
                 fmt: str | None = None) -> None:
    """Fill ``history.config`` from a config document (first source wins).

    The document is read by :func:`lbconvert.config.read.config_from_document`; ``fmt``
    forces the tool convention (e.g. ``"lightning"`` for hyper-parameters Lightning logged)
    when the document itself does not show it. A ``--devices`` already in the history
    counts when the file has no device count.
    """
    label = label or doc.label
    devices = history.config.get("devices")
    overrides = {"devices": devices.value} if devices is not None else None
    cfg = config_from_document(doc, overrides=overrides, fmt=fmt)
    fname = doc.source_file

    def put(name: str, value: Any) -> None:
        key, source = cfg.keys.get(name), cfg.sources.get(name, "")
        if value is None or (key is None and not source.startswith("inferred")):
            return
        history.set(name, value, f"{label} ({key})" if key else f"{label}: {source}",
                    file=fname, line=cfg.lines.get(name), raw_key=key)

    for name in _FIELDS:
        if name == "devices":
            if "devices" in cfg.keys or "num_nodes" in cfg.keys:
                key = cfg.keys.get("devices") or cfg.keys["num_nodes"]
                history.set("devices", cfg.devices, f"{label} ({key})", file=fname,
                            line=cfg.lines.get("devices", cfg.lines.get("num_nodes")),
                            raw_key=key)
            continue
        put(name, getattr(cfg, name))
    if cfg.batch_size is not None:
        key = cfg.keys["batch_size"]
        if cfg.batch_is == "per-device":
            how = (f"{cfg.per_device_batch} per device × {cfg.devices} devices × "
                   f"{cfg.grad_accum} accumulation")
        else:
            how = "global as written"
        history.set("batch_size", cfg.batch_size, f"{label} ({key}: {how})", file=fname,
                    line=cfg.lines.get("batch_size"), raw_key=key)
        if cfg.per_device_batch is not None:
            how = "per device" if cfg.batch_is == "per-device" else \
                cfg.sources.get("per_device_batch", "")
            history.set("per_device_batch", cfg.per_device_batch, f"{label} ({key}: {how})",
                        file=fname, line=cfg.lines.get("batch_size"), raw_key=key)
    if fname is not None:
        history.config_file = history.config_file or fname


def apply_config_file(history: RunHistory, path: Path, label: str | None = None, *,
                      fmt: str | None = None) -> bool:
    """Read a config file found beside a run into ``history``; False (and a note) if unreadable.

    A config the run left behind that cannot be parsed is not fatal: the audit goes on and
    says which file and line it could not use.
    """
    from lbconvert.errors import LbconvertError

    key = str(path.resolve())
    if key in history.config_read:
        return True  # first source wins: a second read could add nothing
    history.config_read.add(key)
    try:
        doc = load_document(path)
        apply_config(history, doc, label or path.name, fmt=fmt)
    except LbconvertError as exc:
        history.notes.append(f"config not used: {exc}")
        return False
    except Exception as exc:  # any file content: a note, never a traceback
        history.notes.append(f"config {path} not used ({type(exc).__name__}: {exc})")
        return False
    return True
