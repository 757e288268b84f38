"""PyTorch Lightning ``CSVLogger`` output: ``metrics.csv`` (sparse rows) + ``hparams.yaml``.

Lightning logs ``step`` = ``trainer.global_step``, the number of optimizer updates made
before the logging call, so update index = step + 1. The batch size in ``hparams.yaml``
is the user's own (``save_hyperparameters``): taken as per device, multiplied by
``devices`` × ``accumulate_grad_batches`` when those are known.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from lbconvert.audit.history import RunHistory
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
    """Read every ``metrics.csv`` (versions are merged; a later version wins a step)."""
    history = RunHistory(path=str(run_dir), format=NAME)
    history.step_note = ("Lightning step = global_step (updates before the log call); "
                         "updates = step + 1")
    for path in metrics_files(run_dir):
        hp = path.parent / "hparams.yaml"
        if hp.is_file():
            apply_config_file(history, hp, "hparams.yaml", fmt="lightning")
        with path.open(newline="") as fh:
            for row in csv.DictReader(fh):
                step = _float(row.get("step", ""))
                if step is None or not math.isfinite(step):
                    continue
                for key, cell in row.items():
                    if key in ("step", "epoch") or key is None:
                        continue
                    value = _float(cell or "")
                    if value is not None:
                        history.add_scalar(key, step + 1, value)
    if not history.config:
        history.notes.append("no hparams.yaml next to metrics.csv: pass --config or --batch-size")
    return history.finalize()
