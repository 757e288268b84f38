"""TensorBoard event files, read without TensorFlow, torch or the ``tensorboard`` package.

The file is a sequence of TFRecords: ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`` (little endian), each ``data`` an ``Event`` protocol buffer.
The few Event / Summary / TensorProto / hparams fields we need are declared in a private
descriptor pool (:mod:`lbconvert.audit.read.tb_proto`) and parsed by the installed protobuf
runtime; plain scalars take a vectorised path (:mod:`lbconvert.audit.read.tfrecord_fast`),
chunk by chunk so memory stays bounded. Unlike ``EventAccumulator`` (which keeps a
10,000-point reservoir per tag unless ``size_guidance`` is 0) every point is kept.

Both CRCs of every record are checked (:mod:`lbconvert.audit.read.tfrecord`, vectorised);
reading stops at the first damaged record and the damage (file, byte offset, records kept)
is recorded on the history. Hyper-parameters logged through TensorBoard's hparams plugin
(``SummaryWriter.add_hparams``, Lightning's ``log_hyperparams``) and JSON written with
``add_text`` fill the run's config. No file content raises: what cannot be decoded is
skipped and said.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lbconvert.audit.history import RunHistory
from lbconvert.audit.read.common import apply_config, config_document, find_files
from lbconvert.audit.read.tb_proto import DT_STRING, event_classes, tensor_scalar, wrap
from lbconvert.audit.read.tfrecord import Damage, frame_records, masked_crc32c

__all__ = ["EventFile", "detect", "event_classes", "event_files", "masked_crc32c", "read",
           "read_events"]

NAME = "tensorboard"
LOOKED_FOR = "events.out.tfevents.* (TensorBoard)"

@dataclass
class EventFile:
    """What one event file held besides scalars: text summaries, hparams, damage."""

    texts: dict[str, str] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    damage: Damage | None = None
    records: int = 0
    undecodable: int = 0


def read_events(path: Path, history: RunHistory, *, verify_crc: bool = True,
                fast: bool = True) -> EventFile:
    """Add every scalar of one event file to ``history``; return texts, hparams and damage.

    Old-style ``simple_value`` and new-style tensor scalars (plugin ``scalars``) are both
    read; ``text`` plugin values are returned as tag → last text, the hparams plugin's
    session start as a dict. Records are read up to the first damaged one (CRC checks);
    ``verify_crc=False`` skips the checks (benchmarks only); ``fast=False`` decodes every
    record with protobuf instead of the vectorised scalar decoder (tests compare the two).
    """
    out = EventFile()
    try:
        buf = path.read_bytes()
    except OSError as exc:
        out.damage = Damage(str(path), 0, 0, "not a record", 0)
        history.notes.append(f"cannot read {path}: {exc}")
        return out
    if verify_crc:
        offsets, lengths, out.damage = frame_records(buf, str(path))
    else:
        from lbconvert.audit.read import tfrecord_fast

        framed = tfrecord_fast.frame(buf) if buf else None
        offsets, lengths, out.damage = framed + (None,) if framed else \
            frame_records(buf, str(path))
    out.records = int(offsets.size)
    if offsets.size == 0:
        return out
    if fast:
        from lbconvert.audit.read.tfrecord import _CHUNK

        records = []
        for lo in range(0, offsets.size, _CHUNK):  # bounded temporaries, same result
            records += _fast_scalars(buf, offsets[lo:lo + _CHUNK], lengths[lo:lo + _CHUNK],
                                     history)
    else:
        records = [buf[o:o + n] for o, n in zip(offsets.tolist(), lengths.tolist())]
    batch_cls, event_cls, hp_cls = event_classes()
    events = _parse(records, batch_cls, event_cls, out)
    raw = history.raw_series
    for ev in events:
        if not ev.HasField("summary"):
            continue
        step = ev.step
        for v in ev.summary.value:
            plugin = v.metadata.plugin_data.plugin_name if v.HasField("metadata") else ""
            if plugin == "hparams":
                out.hparams.update(_hparams(v.metadata.plugin_data.content, hp_cls))
                continue
            if v.HasField("simple_value"):
                value = v.simple_value
            elif v.HasField("tensor"):
                t = v.tensor
                if plugin == "text" or t.dtype == DT_STRING:
                    if t.string_val:
                        out.texts[v.tag] = t.string_val[0].decode("utf-8", "replace")
                    continue
                value = tensor_scalar(t)
                if value is None:
                    continue
            else:
                continue
            s = raw.get(v.tag)
            if s is None:
                history.add_scalar(v.tag, step, value)
            else:
                s.steps.append(step)
                s.values.append(value)
    return out


def _parse(records: list[bytes], batch_cls, event_cls, out: EventFile) -> list:
    """Events from record payloads: one native call, else record by record (bad ones skipped)."""
    from google.protobuf.message import DecodeError

    batch = batch_cls()
    try:
        batch.ParseFromString(wrap(records))
        return list(batch.event)
    except (DecodeError, ValueError, RuntimeError):
        pass
    events = []
    for r in records:
        ev = event_cls()
        try:
            ev.ParseFromString(r)
        except (DecodeError, ValueError, RuntimeError):
            out.undecodable += 1
            continue
        events.append(ev)
    return events


def _hparams(content: bytes, hp_cls) -> dict[str, Any]:
    from google.protobuf.message import DecodeError

    msg = hp_cls()
    try:
        msg.ParseFromString(content)
    except (DecodeError, ValueError, RuntimeError):
        return {}
    if not msg.HasField("session_start_info"):
        return {}
    out: dict[str, Any] = {}
    for e in msg.session_start_info.hparams:
        kind = e.value.WhichOneof("kind")
        if kind in ("number_value", "string_value", "bool_value"):
            v = getattr(e.value, kind)
            if kind == "number_value" and float(v).is_integer():
                v = int(v)
            out[e.key] = v
    return out


def _fast_scalars(buf: bytes, offsets, lengths, history: RunHistory) -> list[bytes]:
    """Decode plain old-style scalars with numpy; return the other records' payloads.

    Within a tag, fast-path points precede protobuf-path points; ``finalize`` orders by
    step.
    """
    from lbconvert.audit.read import tfrecord_fast

    fast, steps, values, tag_index, tags = tfrecord_fast.decode_simple_scalars(
        buf, offsets, lengths)
    if tags:
        import numpy as np

        order = np.argsort(tag_index, kind="stable")
        bounds = np.searchsorted(tag_index[order], np.arange(len(tags) + 1))
        st, va = steps[order].tolist(), values[order].tolist()
        for k, tag in enumerate(tags):
            lo, hi = int(bounds[k]), int(bounds[k + 1])
            s = history.raw_series.get(tag)
            if s is None:
                history.add_scalar(tag, st[lo], va[lo])
                s = history.raw_series[tag]
                lo += 1
            s.steps.extend(st[lo:hi])
            s.values.extend(va[lo:hi])
    slow = (~fast).nonzero()[0]
    return [buf[o:o + n] for o, n in zip(offsets[slow].tolist(), lengths[slow].tolist())]


def event_files(run_dir: Path) -> list[Path]:
    """Every ``events.out.tfevents.*`` under ``run_dir`` (up to 2 folders deep), sorted."""
    return find_files(run_dir, "events.out.tfevents.*")


def detect(run_dir: Path) -> bool:
    """True when the directory holds TensorBoard event files."""
    return bool(event_files(run_dir))


def read(run_dir: Path, *, verify_crc: bool = True, fast: bool = True) -> RunHistory:
    """Read all event files of a run (several files and subfolders are merged by tag).

    A subfolder's scalars are tagged ``sub/tag`` when the same tag appears in several
    subfolders (e.g. Keras-style ``train/`` and ``validation/`` writers). Text summaries
    that hold JSON (HF's ``args/text_summary``) and the hparams plugin fill the config.
    Damaged files are read up to the damage (``history.damage``); when no file has a
    readable record, LbconvertError names them.
    """
    history = RunHistory(path=str(run_dir), format=NAME)
    history.step_note = ("TensorBoard steps are taken as optimizer updates (the global_step "
                         "convention of SummaryWriter and HF)")
    files = event_files(run_dir)
    by_folder: dict[Path, list[Path]] = {}
    for f in files:
        by_folder.setdefault(f.parent, []).append(f)
    subs: list[tuple[str, RunHistory]] = []
    records, empty = 0, []
    for folder, fs in sorted(by_folder.items()):
        sub = RunHistory(path=str(folder), format=NAME)
        texts: dict[str, str] = {}
        hparams: dict[str, Any] = {}
        for f in fs:
            ef = read_events(f, sub, verify_crc=verify_crc, fast=fast)
            texts.update(ef.texts)
            hparams.update(ef.hparams)
            records += ef.records
            if ef.damage is not None:
                history.damage.append(ef.damage)
                history.notes.append(ef.damage.message())
            elif ef.records == 0:
                empty.append(f)
            if ef.undecodable:
                history.notes.append(f"{f}: {ef.undecodable} record(s) with intact checksums "
                                     "could not be decoded as events and were skipped")
        lightning = _is_lightning(folder, sub)
        if lightning:
            # Lightning logs step = global_step of the update just made, 0-based (its CSV too).
            for s in sub.raw_series.values():
                s.steps[:] = [x + 1 for x in s.steps]
            history.step_note = ("Lightning TensorBoardLogger step = global_step (0-based): "
                                 "updates = step + 1")
        subs.append((folder.relative_to(run_dir).as_posix(), sub))
        for tag, text in texts.items():
            _apply_text(history, tag, text)
        if hparams:
            label = f"TensorBoard hparams ({folder.relative_to(run_dir).as_posix()})"
            apply_config(history, config_document(hparams, label),
                         fmt="lightning" if lightning else None)
    if files and records == 0:
        from lbconvert.errors import LbconvertError

        why = [d.message() for d in history.damage] + [f"{f} is empty ({f.stat().st_size} "
                                                       "bytes)" for f in empty]
        raise LbconvertError(f"no readable TensorBoard record in {run_dir}: {'; '.join(why)}",
                             hint="point at the run's intact event files, or remove the "
                                  "damaged ones")
    for f in empty:
        history.notes.append(f"{f} holds no records (empty file)")
    seen: dict[str, int] = {}
    for _, sub in subs:
        for tag in sub.raw_series:
            seen[tag] = seen.get(tag, 0) + 1
    for rel, sub in subs:
        for tag, s in sub.raw_series.items():
            # A tag written by several writers (Keras-style train/ and validation/) is
            # kept apart under its subfolder name.
            key = f"{rel}/{tag}" if seen[tag] > 1 and rel != "." else tag
            dst = history.raw_series.setdefault(key, type(s)(key, [], [], key))
            dst.steps.extend(s.steps)
            dst.values.extend(s.values)
    return history.finalize()


def _is_lightning(folder: Path, sub: RunHistory) -> bool:
    """A Lightning TensorBoardLogger folder: ``version_N`` with hparams.yaml or an epoch tag."""
    versioned = re.fullmatch(r"version_\d+", folder.name) is not None
    return versioned and ((folder / "hparams.yaml").is_file() or "epoch" in sub.raw_series)


def _apply_text(history: RunHistory, tag: str, text: str) -> None:
    # TensorBoard's text plugin stores markdown; HF writes TrainingArguments.to_json_string().
    body = text.strip()
    if body.startswith("```") and body.endswith("```"):
        body = body.strip("`").strip()
    try:
        doc = json.loads(body)
    except ValueError:
        return
    if isinstance(doc, dict):
        # The event file is binary: there is no line to anchor a finding at.
        apply_config(history, config_document(doc, f"TensorBoard text summary {tag}"))
