"""Audit "read" stage: find what kind of run a directory holds and read it.

Config values come from the run's own files first, then ``--config``, then flags; each
keeps its source. Weight checkpoints, when present beside logs, add ‖w_t − w_0‖ (this
imports torch; ``logs_only`` skips it).
"""

from __future__ import annotations

import math
from pathlib import Path

from lbconvert._text import first_line
from lbconvert.audit.history import RunHistory
from lbconvert.audit.read import FORMATS, reader
from lbconvert.audit.read.common import apply_config, apply_config_file, load_document
from lbconvert.audit.read.discover import RunRef, config_files, not_a_run_folder
from lbconvert.errors import LbconvertError


def detect_formats(run_dir: Path) -> list[str]:
    """Names of the formats found in ``run_dir``, primary first.

    A reader whose detection trips over a file's content (binary bytes in a CSV, say) does
    not claim the run.
    """
    found = []
    for name in FORMATS:
        try:
            if reader(name).detect(run_dir):
                found.append(name)
        except (OSError, ValueError, UnicodeDecodeError):
            continue
    return found


def read_run(run_dir: str | Path | RunRef, *, format_in: str | None = None,
             config_file: str | Path | None = None, batch_size: int | None = None,
             devices: int | None = None, dataset_size: int | None = None,
             logs_only: bool = False, tag_map: dict[str, str] | None = None) -> RunHistory:
    """Read one run (a folder, or a :class:`RunRef` from run discovery) into a RunHistory.

    Config files beside the run or above it (up to the folder the user passed) fill what
    the run's own files lack. Raises :class:`LbconvertError` when the path is missing or
    holds no recognisable run (the message lists what was looked for), when ``format_in``
    is unknown, or when a file cannot be read at all (one line, never a traceback).
    """
    ref = run_dir if isinstance(run_dir, RunRef) else None
    path = ref.path if ref else Path(run_dir)
    from lbconvert.audit.read import wandb

    if wandb.is_uri(path):  # wandb://entity/project/run_id, through the W&B API
        history = wandb.read_uri(path)
        history.name = history.path
        complete_config(history, config_file=config_file, batch_size=batch_size,
                        devices=devices, dataset_size=dataset_size)
        steps_as_epochs(history)
        return history
    if not path.is_dir():
        raise not_a_run_folder(path)
    if ref is None:
        ref = RunRef(path, path.name, path)
    if ref.store is not None:  # an MLflow sqlite file named on the command line
        found = ["mlflow"]
    elif format_in:
        if format_in not in FORMATS:
            raise LbconvertError(f"--format-in {format_in!r} is not a known run format",
                                 hint=f"use one of {', '.join(FORMATS)}")
        if not reader(format_in).detect(path):
            raise LbconvertError(f"{path} has no {reader(format_in).LOOKED_FOR}",
                                 hint="check the path or drop --format-in to auto-detect")
        found = [format_in]
    else:
        found = detect_formats(path)
    if not found:
        looked = "; ".join(reader(n).LOOKED_FOR for n in FORMATS)
        raise LbconvertError(f"no recognisable training run in {path} (looked for: {looked})",
                             hint="pass the run's output folder, or --format-in to force a reader")
    primary = found[0]
    if primary == "checkpoints" and logs_only:
        raise LbconvertError(f"{path} holds only checkpoints, and --logs-only (or check "
                             "--runs-only) does not load them",
                             hint="drop --logs-only, or point at the run's logs")
    mod = reader(primary)
    try:
        if primary == "timm":
            history = mod.read(path, devices=devices)
        elif primary == "mlflow" and ref.mlflow_run:
            history = mod.read(path, run_id=ref.mlflow_run, db=ref.store)
        else:
            history = mod.read(path)
        if primary != "checkpoints" and "checkpoints" in found \
                and "weight_distance" not in history.series:
            if logs_only:
                history.notes.append("checkpoints present but not read (--logs-only): no "
                                     "weight distance")
            elif not _late_checkpoints(path, history):
                from lbconvert.audit.read.checkpoints import read_distance

                read_distance(path, history)
                history.series.pop("weight_distance", None)
                history.finalize()
    except LbconvertError:
        raise
    except Exception as exc:  # any file content: one line, never a traceback
        first = first_line(exc, 200)
        raise LbconvertError(f"cannot read {path} as a {primary} run "
                             f"({type(exc).__name__}: {first})",
                             hint="check the run's files, or --format-in to pick a reader") \
            from exc
    history.name = ref.name
    if ref.mlflow_run:
        # runs of one database share its folder: name the run in the path findings carry
        history.path = f"{ref.store or path / 'mlflow.db'}#{ref.name.rsplit('/', 1)[-1]}"
    for cfg in config_files(path, ref.root):
        # first source wins: the run's own files (read above) before configs found around it
        apply_config_file(history, cfg, _rel(cfg, ref.root))
    if tag_map:
        history.tag_map = dict(tag_map)
        history.series.clear()
        history.finalize()
        for tag, name in tag_map.items():
            if tag not in history.raw_series:  # a typo must not pass unnoticed
                history.notes.append(f"--tag {name}={tag}: this run logged no tag {tag!r} "
                                     "(-v lists the logged tags)")
    complete_config(history, config_file=config_file, batch_size=batch_size, devices=devices,
                    dataset_size=dataset_size)
    steps_as_epochs(history)
    return history


def first_lr_drop(history: RunHistory) -> float | None:
    """The first logged update where the LR is below half its running peak (a drop)."""
    s = history.series.get("lr")
    if s is None:
        return None
    peak = -math.inf
    for step, v in zip(s.steps, s.values):
        if math.isfinite(v):
            peak = max(peak, v)
            if peak > 0 and v < 0.5 * peak:
                return float(step)
    return None


MIN_BEFORE_DROP = 3  # LB004 fits ‖w − w0‖ against ln t before the drop: 3 points at least


def _late_checkpoints(path: Path, history: RunHistory) -> bool:
    """Logs first: True (and a note) when the checkpoints cannot judge the LR drop the logs
    show — none at update 0 and fewer than 3 before the first drop — so reading them
    would only import torch (seconds, hundreds of MB) and turn the logs' judgement of the
    drop (LB004 on the train loss) into "not judged".

    HF's ``save_total_limit`` keeps the last checkpoints only, typically all after the
    drop. Steps come from the file names (``checkpoint-N``, ``step=N``): no file is opened.
    """
    from lbconvert.audit.read.checkpoints import checkpoint_files, step_from_name

    drop = first_lr_drop(history)
    steps = [step_from_name(p) for p in checkpoint_files(path)]
    if drop is None or not steps or any(s is None for s in steps) or min(steps) == 0:
        return False
    before = sum(1 for s in steps if s < drop)
    if before >= MIN_BEFORE_DROP:
        return False
    history.notes.append(
        f"checkpoints not read: {len(steps)} from update {min(steps)}, {before} before the "
        f"LR drop at update {drop:g} (HF save_total_limit keeps only the last ones) and "
        f"none at update 0; the logs judge the run (LB004 needs {MIN_BEFORE_DROP} "
        "checkpoints before the drop)")
    return True


def steps_as_epochs(history: RunHistory) -> None:
    """Convert a run logged with the epoch as step (``add_scalar(tag, v, epoch)``) to updates.

    TensorBoard and MLflow steps are whatever the script passed. When the config says E
    epochs of ⌈N/B⌉ ≥ 2 updates and the last logged step is E − 1 or E, the steps are
    epochs, not updates: read as such, every judgement by update count (LB001 above all)
    would compare epochs with epochs and pass. Steps become updates at the end of each
    epoch (× ⌈N/B⌉) and the note says so.
    """
    if history.format not in ("tensorboard", "mlflow", "wandb", "raytune") or \
            history.step_note.startswith("Lightning"):
        return
    e, n, b, t = (history.get("epochs"), history.get("dataset_size"), history.batch_size,
                  history.total_updates)
    if not all(isinstance(v, (int, float)) and v > 0 for v in (e, b, t)):
        return
    if not (isinstance(n, (int, float)) and n > 0):
        if float(e) == int(e) and t in (e - 1, e):
            history.notes.append(
                f"logged steps end at {t:g} and the config has {e:g} epochs: if the script "
                "logs with the epoch as step, pass --dataset-size N so the steps are "
                "converted to updates (update counts are compared as logged)")
        return
    spe = math.ceil(n / b)
    if spe < 2 or float(e) != int(e) or t not in (e - 1, e):
        return
    offset = e - t  # 1: epochs counted from 0 (the last is E − 1); 0: from 1
    for tag, s in list(history.raw_series.items()):
        history.raw_series[tag] = type(s)(s.name, [(x + offset) * spe for x in s.steps],
                                          list(s.values), s.tag)
    history.series.clear()
    history.total_updates = None
    history.finalize()
    history.total_updates = e * spe
    history.notes.append(
        f"logged steps end at {t:g} while the config has {e:g} epochs of ⌈{n}/{b}⌉ = {spe} "
        f"updates: steps read as epochs (counted from {1 - offset:g}) and converted to "
        f"updates (step × {spe}), {e * spe:g} in all; if the steps were updates, the config "
        "is wrong (--batch-size, --dataset-size)")


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve().parent).as_posix()
    except ValueError:
        return path.name


def complete_config(history: RunHistory, *, config_file: str | Path | None = None,
                    batch_size: int | None = None, devices: int | None = None,
                    dataset_size: int | None = None) -> None:
    """Fill values the run's files lack: from ``--config``, then flags, then estimates."""
    if devices and "devices" not in history.config:
        history.set("devices", devices, "flag --devices")
        per = history.config.get("per_device_batch")
        if per is not None and "batch_size" in history.config and \
                "× 1 devices" in history.config["batch_size"].source:
            acc = history.get("grad_accum", 1)
            history.set("batch_size", per.value * devices * acc,
                        f"{per.source} × {devices} devices (flag --devices) × {acc} accumulation",
                        file=per.file, line=per.line, raw_key=per.key, override=True)
    if config_file is not None:
        cfg_path = Path(config_file)
        if not cfg_path.is_file():
            raise LbconvertError(f"--config {cfg_path} does not exist",
                                 hint="pass the run's training config file")
        apply_config(history, load_document(cfg_path), f"--config {cfg_path.name}")
    if batch_size is not None:
        history.set("batch_size", batch_size, "flag --batch-size")
    if dataset_size is not None:
        history.set("dataset_size", dataset_size, "flag --dataset-size")
    if "batch_size" not in history.config and "per_device_batch" in history.config:
        per = history.config["per_device_batch"]
        history.set("batch_size", per.value * history.get("devices", 1) *
                    history.get("grad_accum", 1), f"{per.source}, assuming 1 device, no "
                    "accumulation", file=per.file, line=per.line, raw_key=per.key)
    spe, batch = history.get("steps_per_epoch"), history.get("batch_size")
    if "dataset_size" not in history.config and spe and batch:
        history.set("dataset_size", int(round(spe * batch)),
                    f"estimate: steps per epoch {spe:g} × batch {batch} (an upper bound)")
