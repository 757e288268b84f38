"""Hugging Face ``Trainer`` output: ``trainer_state.json`` and ``checkpoint-*/``.

``log_history`` entries carry ``step`` = ``global_step`` (optimizer updates). The state's
``train_batch_size`` is per device × GPUs of one process (no gradient accumulation, no
other processes), so the global batch comes from ``TrainingArguments`` when the
TensorBoard callback saved them as JSON (``runs/*/events*``, tag ``args/text_summary``).
``training_args.bin`` is a pickle and is never loaded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lbconvert.audit.history import RunHistory
from lbconvert.audit.read.common import find_line

NAME = "hf"
LOOKED_FOR = "trainer_state.json (Hugging Face Trainer), also in checkpoint-*/"

_SUMMARY_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second",
                 "total_flos"}
_KEYS = {"loss": "train_loss", "eval_loss": "val_loss", "learning_rate": "lr",
         "grad_norm": "grad_norm"}


def state_file(run_dir: Path) -> Path | None:
    """The run's ``trainer_state.json``: the top-level one, else the latest checkpoint's."""
    top = run_dir / "trainer_state.json"
    if top.is_file():
        return top
    cks = []
    for p in run_dir.glob("checkpoint-*/trainer_state.json"):
        m = re.search(r"checkpoint-(\d+)", p.parent.name)
        cks.append((int(m.group(1)) if m else -1, p))
    return max(cks)[1] if cks else None


def detect(run_dir: Path) -> bool:
    """True when a ``trainer_state.json`` is present."""
    return state_file(run_dir) is not None


def read(run_dir: Path) -> RunHistory:
    """Read ``trainer_state.json``, plus the TrainingArguments JSON from TensorBoard if any."""
    path = state_file(run_dir)
    history = RunHistory(path=str(run_dir), format=NAME)
    history.step_note = "HF log_history step = global_step = optimizer updates"
    try:
        text = path.read_text(encoding="utf-8")
        state = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        from lbconvert.errors import LbconvertError

        raise LbconvertError(f"cannot read {path} as JSON ({exc})",
                             hint="pass an intact trainer_state.json") from exc
    if not isinstance(state, dict):
        state = {}
    for entry in state.get("log_history", []) or []:
        if not isinstance(entry, dict):
            continue
        step = entry.get("step")
        if step is None or not isinstance(step, (int, float)):
            continue
        if _SUMMARY_KEYS & entry.keys():
            # Trainer's end-of-training summary: train_loss is the mean over the whole run.
            history.notes.append(f"{path.name}: the end-of-training summary at step {step} "
                                 "(train_loss = mean over the run) is not a loss point")
            continue
        for key, value in entry.items():
            if key in ("step", "epoch") or not isinstance(value, (int, float)):
                continue
            history.add_scalar(key, float(step), float(value))
    # Map HF key names before finalize picks canonical series.
    for key, name in _KEYS.items():
        if key in history.raw_series and name not in history.raw_series:
            s = history.raw_series.pop(key)
            s.name = s.tag = name
            history.raw_series[name] = s
    args = _training_args(run_dir, history)
    if args:
        from lbconvert.audit.read.common import apply_config, config_document

        label = "TrainingArguments (TensorBoard args/text_summary)"
        apply_config(history, config_document(args, label), fmt="hf")
    gs, ms, ne = state.get("global_step"), state.get("max_steps"), state.get("num_train_epochs")
    fname = str(path)
    if gs:
        history.total_updates = float(gs)
    if ms and ne:
        spe = ms / ne
        history.set("steps_per_epoch", spe, f"{path.name} (max_steps / num_train_epochs)",
                    file=fname, line=find_line(text, "max_steps"))
    history.set("epochs", float(ne) if ne else None, f"{path.name} (num_train_epochs)",
                file=fname, line=find_line(text, "num_train_epochs"), raw_key="num_train_epochs")
    history.set("max_steps", ms or None, f"{path.name} (max_steps)", file=fname,
                line=find_line(text, "max_steps"), raw_key="max_steps")
    tbs = state.get("train_batch_size")
    if tbs and "batch_size" not in history.config:
        history.set("per_device_batch", int(tbs), f"{path.name} (train_batch_size)", file=fname,
                    line=find_line(text, "train_batch_size"), raw_key="train_batch_size")
        history.notes.append(
            f"global batch unknown: {path.name} train_batch_size={tbs} is per process and "
            "excludes gradient accumulation; pass --batch-size or --config (TrainingArguments "
            "JSON)")
    if (run_dir / "training_args.bin").exists() and not args:
        history.notes.append("training_args.bin is a pickle and was not loaded (unsafe): "
                             "pass --config with the TrainingArguments as JSON")
    history.config_file = fname
    return history.finalize()


def _training_args(run_dir: Path, history: RunHistory) -> dict | None:
    from lbconvert.audit.read import tensorboard as tb

    files = tb.event_files(run_dir)
    if not files:
        return None
    scratch = RunHistory(path=str(run_dir), format=tb.NAME)
    texts: dict[str, str] = {}
    for f in files:
        texts.update(tb.read_events(f, scratch).texts)
    body = texts.get("args/text_summary")
    if body is None:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None
