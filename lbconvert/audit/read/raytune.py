"""Ray Tune trial folders: ``params.json`` + ``progress.csv`` (or ``result.json``).

Ray Tune writes one folder per trial under ``<storage_path>/<experiment>/``: ``params.json``
(the trial's config, where a sweep's batch size and LR live), ``progress.csv`` (one row per
``tune.report`` call, the config flattened as ``config/...`` columns) and ``result.json``
(the same rows as JSON lines, the config nested).

What a step is: ``training_iteration`` counts ``tune.report`` calls, which is whatever the
trainable chose (an epoch, an evaluation, N updates) — not an update. The update index is
taken, in order, from a reported counter (``global_step``, ``step``, ``updates``,
``num_updates``); else from a reported ``epoch`` (epochs done) × ⌈dataset_size / batch⌉
when both are known; else the iteration itself, said in the notes.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from lbconvert.audit.history import RunHistory
from lbconvert.audit.read.common import apply_config, config_document, load_document

NAME = "raytune"
LOOKED_FOR = "params.json + progress.csv or result.json (a Ray Tune trial folder)"

_COUNTERS = ("global_step", "step", "updates", "num_updates", "trainer/global_step")
# Ray's own bookkeeping columns: not metrics of the training
_BOOK = {"timestamp", "done", "training_iteration", "time_this_iter_s", "time_total_s", "pid",
         "time_since_restore", "iterations_since_restore", "timesteps_total",
         "episodes_total", "timesteps_since_restore", "epoch", "date", "trial_id",
         "hostname", "node_ip", "checkpoint_dir_name", "should_checkpoint"}


def detect(run_dir: Path) -> bool:
    """True when ``params.json`` and ``progress.csv`` or ``result.json`` are present."""
    return (run_dir / "params.json").is_file() and \
        ((run_dir / "progress.csv").is_file() or (run_dir / "result.json").is_file())


def _rows(run_dir: Path) -> tuple[list[dict[str, Any]], str]:
    progress = run_dir / "progress.csv"
    if progress.is_file():
        with progress.open(newline="") as fh:
            return [dict(r) for r in csv.DictReader(fh)], progress.name
    rows = []
    with (run_dir / "result.json").open() as fh:
        for line in fh:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    break  # a trial cut mid-write: the rows before it stand
    return rows, "result.json"


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None or v == "":
        return None
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read(run_dir: Path) -> RunHistory:
    """Read the trial's params and its reported rows; steps as the module docstring says."""
    history = RunHistory(path=str(run_dir), format=NAME)
    params = run_dir / "params.json"
    doc = load_document(params)
    apply_config(history, config_document(doc, "params.json"))
    rows, source = _rows(run_dir)
    keys = {k for r in rows for k in r}
    counter = next((c for c in _COUNTERS if c in keys), None)
    batch, n = history.batch_size, history.get("dataset_size")
    spe = math.ceil(n / batch) if batch and n else None
    if counter:
        history.step_note = f"Ray Tune: the reported {counter!r} = optimizer updates"
    elif "epoch" in keys and spe:
        history.step_note = (f"Ray Tune: reported epoch × ⌈{n}/{batch}⌉ = {spe} updates "
                             "(training_iteration counts tune.report calls, not updates)")
    else:
        history.step_note = ("Ray Tune training_iteration (one per tune.report call) taken "
                             "as the step: not updates unless the trainable reports each "
                             "update (report global_step, or epoch with dataset_size in "
                             "the config)")
    for row in rows:
        if counter:
            at = _num(row.get(counter))
        elif "epoch" in keys and spe:
            e = _num(row.get("epoch"))
            at = e * spe if e is not None else None
        else:
            at = _num(row.get("training_iteration"))
        if at is None or not math.isfinite(at):
            continue
        for key, cell in row.items():
            if key in _BOOK or key == counter or key.startswith("config/") or key == "config":
                continue
            v = _num(cell)
            if v is not None:
                history.add_scalar(key, at, v)
    history.notes.append(f"Ray Tune trial: {len(rows)} reported rows from {source}")
    history.config_file = str(params)
    return history.finalize()
