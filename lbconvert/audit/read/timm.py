"""timm ``train.py`` output: ``summary.csv`` (one row per epoch) + ``args.yaml``.

timm's ``-b/--batch-size`` is per process; the global batch is batch_size × world size ×
``grad_accum_steps``. The world size is not saved in ``args.yaml``: pass ``--devices``
(else 1 is assumed and said). Epoch rows become update counts as
(epoch + 1) × ⌈dataset_size / global batch⌉ when the dataset size is known.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from lbconvert.audit.history import RunHistory
from lbconvert.audit.read.common import apply_config_file

NAME = "timm"
LOOKED_FOR = "summary.csv + args.yaml (timm train.py)"
_COLUMNS = {"train_loss": "train_loss", "eval_loss": "val_loss", "lr": "lr",
            "eval_top1": "val_accuracy"}


def detect(run_dir: Path) -> bool:
    """True when ``summary.csv`` with an ``epoch`` column is present."""
    p = run_dir / "summary.csv"
    if not p.is_file():
        return False
    with p.open(newline="") as fh:
        header = next(csv.reader(fh), [])
    return "epoch" in header


def read(run_dir: Path, *, devices: int | None = None) -> RunHistory:
    """Read ``summary.csv`` and ``args.yaml``; steps are converted from epochs to updates."""
    history = RunHistory(path=str(run_dir), format=NAME)
    if devices:
        history.set("devices", devices, "flag --devices")
    args = run_dir / "args.yaml"
    if args.is_file():
        apply_config_file(history, args, "args.yaml", fmt="timm")
    if "devices" not in history.config:
        history.notes.append("timm's args.yaml has no world size: assumed 1 device "
                             "(pass --devices N)")
    batch, n = history.get("batch_size"), history.get("dataset_size")
    spe = math.ceil(n / batch) if batch and n else None
    if spe:
        history.set("steps_per_epoch", spe, f"⌈dataset_size {n} / batch {batch}⌉")
        history.step_note = f"timm rows are epochs; updates = (epoch + 1) × {spe}"
    else:
        history.step_note = ("timm rows are epochs and the dataset size is unknown: steps are "
                             "epochs, not updates (pass --config with dataset_size)")
    with (run_dir / "summary.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            epoch = float(row["epoch"])
            step = (epoch + 1) * spe if spe else epoch + 1
            for col, cell in row.items():
                if col == "epoch" or cell in ("", None):
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue
                history.add_scalar(_COLUMNS.get(col, col), step, value)
    return history.finalize()
