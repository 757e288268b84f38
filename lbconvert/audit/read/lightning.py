"""PyTorch Lightning ``CSVLogger`` output: ``metrics.csv`` (sparse rows) + ``hparams.yaml``.

Lightning logs ``step`` = ``trainer.global_step``, the number of optimizer updates made
before the logging call, so update index = step + 1. The batch size in ``hparams.yaml``
is the user's own (``save_hyperparameters``): taken as per device, multiplied by
``devices`` × ``accumulate_grad_batches`` when those are known.
"""

from __future__ import annotations

import csv
import math
from array import array
from pathlib import Path

from lbconvert.audit.history import RunHistory, Series
from lbconvert.audit.read.common import apply_config_file, find_files

NAME = "lightning"
LOOKED_FOR = "metrics.csv (+ hparams.yaml) from Lightning's CSVLogger"


def metrics_files(run_dir: Path) -> list[Path]:
    """``metrics.csv`` files whose header has Lightning's ``step`` column."""
    out = []
    for p in find_files(run_dir, "metrics.csv"):
        try:
            with p.open(newline="") as fh:
                header = next(csv.reader(fh), [])
        except OSError:
            continue
        if "step" in header:
            out.append(p)
    return out


def detect(run_dir: Path) -> bool:
    """True when a Lightning ``metrics.csv`` is present."""
    return bool(metrics_files(run_dir))


def _float(cell: str) -> float | None:
    if cell == "":
        return None
    try:
        return float(cell)
    except ValueError:
        return math.nan if cell.strip().lower() in ("nan", "inf", "-inf") else None


def read(run_dir: Path) -> RunHistory:
    """Read every ``metrics.csv`` (versions are merged; a later version wins a step).

    Streamed row by row into one pair of ``array('d')`` per column (16 bytes a point, no
    per-cell Python float kept), so a 2,000,000-row file peaks below twice its size.
    """
    history = RunHistory(path=str(run_dir), format=NAME)
    history.step_note = ("Lightning step = global_step (updates before the log call); "
                         "updates = step + 1")
    for path in metrics_files(run_dir):
        hp = path.parent / "hparams.yaml"
        if hp.is_file():
            apply_config_file(history, hp, "hparams.yaml", fmt="lightning")
        _read_csv(path, history)
    if not history.config:
        history.notes.append("no hparams.yaml next to metrics.csv: pass --config or --batch-size")
    return history.finalize()


def _read_csv(path: Path, history: RunHistory) -> None:
    with path.open(newline="") as fh:
        rows = csv.reader(fh)
        header = next(rows, [])
        if "step" not in header:
            return
        at = header.index("step")
        cols = [(j, key) for j, key in enumerate(header) if key not in ("step", "epoch")]
        data = {key: (array("d"), array("d")) for _, key in cols}
        for row in rows:
            if len(row) <= at:
                continue
            step = _float(row[at])
            if step is None or not math.isfinite(step):
                continue
            update = step + 1
            for j, key in cols:
                if j >= len(row) or row[j] == "":
                    continue
                value = _float(row[j])
                if value is not None:
                    steps, values = data[key]
                    steps.append(update)
                    values.append(value)
    for key, (steps, values) in data.items():
        if not steps:
            continue
        old = history.raw_series.get(key)
        if old is None:
            history.raw_series[key] = Series(key, steps, values, key)
        else:  # a second version's file: appended, a later write of a step wins on sort
            history.raw_series[key] = Series(key, array("d", old.steps) + steps,
                                             array("d", old.values) + values, key)
