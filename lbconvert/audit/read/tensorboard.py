"""TensorBoard event files, read without TensorFlow, torch or the ``tensorboard`` package.

The file is a sequence of TFRecords: ``uint64 length | uint32 masked_crc32c(length) | data |
uint32 masked_crc32c(data)`` (little endian), each ``data`` an ``Event`` protocol buffer.
We declare the few Event / Summary / TensorProto fields we need (field numbers as in
tensorboard/compat/proto) in a private descriptor pool and let the installed protobuf
runtime parse them. Unlike ``EventAccumulator`` (which keeps a 10,000-point reservoir per
tag unless ``size_guidance`` is 0) every point is kept.

CRC checks are off by default because pure-Python CRC-32C costs more than parsing; a
truncated final record (a run still being written) is skipped, not an error.
"""

from __future__ import annotations

import json
import struct
from functools import lru_cache
from pathlib import Path

from lbconvert.audit.history import RunHistory
from lbconvert.audit.read.common import apply_config, config_document, find_files

NAME = "tensorboard"
LOOKED_FOR = "events.out.tfevents.* (TensorBoard)"

_DT_FLOAT, _DT_DOUBLE, _DT_INT32, _DT_STRING, _DT_INT64, _DT_HALF = 1, 2, 3, 7, 9, 19


@lru_cache(maxsize=1)
def _event_classes():
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    fdp = descriptor_pb2.FileDescriptorProto(name="lbconvert_tb_event.proto",
                                             package="lbconvert_tb", syntax="proto3")

    def msg(name, fields):
        m = fdp.message_type.add(name=name)
        for fname, num, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=num, type=ftype, label=label)
            if type_name:
                f.type_name = ".lbconvert_tb." + type_name
        return m

    OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    msg("PluginData", [("plugin_name", 1, F.TYPE_STRING, OPT, None),
                       ("content", 2, F.TYPE_BYTES, OPT, None)])
    msg("SummaryMetadata", [("plugin_data", 1, F.TYPE_MESSAGE, OPT, "PluginData")])
    tp = msg("TensorProto", [("dtype", 1, F.TYPE_INT32, OPT, None),
                             ("tensor_content", 4, F.TYPE_BYTES, OPT, None),
                             ("float_val", 5, F.TYPE_FLOAT, REP, None),
                             ("double_val", 6, F.TYPE_DOUBLE, REP, None),
                             ("int_val", 7, F.TYPE_INT32, REP, None),
                             ("string_val", 8, F.TYPE_BYTES, REP, None),
                             ("int64_val", 10, F.TYPE_INT64, REP, None)])
    for f in tp.field:
        if f.label == REP and f.type != F.TYPE_BYTES:
            f.options.packed = True
    msg("Value", [("tag", 1, F.TYPE_STRING, OPT, None),
                  ("simple_value", 2, F.TYPE_FLOAT, OPT, None),
                  ("tensor", 8, F.TYPE_MESSAGE, OPT, "TensorProto"),
                  ("metadata", 9, F.TYPE_MESSAGE, OPT, "SummaryMetadata")])
    # proto3 scalars have no presence; simple_value must be distinguishable from 0.0 unset,
    # so mark it proto3-optional through a synthetic oneof.
    val = fdp.message_type[-1]
    val.oneof_decl.add(name="_simple_value")
    val.field[1].oneof_index = 0
    val.field[1].proto3_optional = True
    msg("Summary", [("value", 1, F.TYPE_MESSAGE, REP, "Value")])
    msg("Event", [("wall_time", 1, F.TYPE_DOUBLE, OPT, None),
                  ("step", 2, F.TYPE_INT64, OPT, None),
                  ("file_version", 3, F.TYPE_STRING, OPT, None),
                  ("summary", 5, F.TYPE_MESSAGE, OPT, "Summary")])
    msg("EventBatch", [("event", 1, F.TYPE_MESSAGE, REP, "Event")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return get(pool.FindMessageTypeByName("lbconvert_tb.EventBatch"))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli): ((crc >> 15 | crc << 17) + 0xa282ead8)."""
    crc = 0xFFFFFFFF
    table = _crc_table()
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@lru_cache(maxsize=1)
def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


def iter_records(buf: bytes, *, verify_crc: bool = False, name: str = "") -> list[bytes]:
    """Split a TFRecord buffer into record payloads (a truncated tail record is dropped).

    With ``verify_crc`` both checksums are checked and a mismatch raises ``ValueError``.
    """
    out = []
    pos, n = 0, len(buf)
    unpack = struct.Struct("<Q").unpack_from
    append = out.append
    while pos + 12 <= n:
        (length,) = unpack(buf, pos)
        end = pos + 12 + length
        if end + 4 > n:
            break
        if verify_crc:
            (lcrc,) = struct.unpack_from("<I", buf, pos + 8)
            (dcrc,) = struct.unpack_from("<I", buf, end)
            if lcrc != masked_crc32c(buf[pos:pos + 8]) or dcrc != masked_crc32c(buf[pos + 12:end]):
                raise ValueError(f"{name}: corrupt TFRecord at byte {pos} (CRC mismatch)")
        append(buf[pos + 12:end])
        pos = end + 4
    return out


def _wrap(records: list[bytes]) -> bytes:
    # Re-frame the payloads as a repeated field of one message so the protobuf runtime
    # parses all of them in a single native call instead of one Python call per event.
    parts = []
    add = parts.append
    cache: dict[int, bytes] = {}
    for r in records:
        n = len(r)
        head = cache.get(n)
        if head is None:
            head = cache[n] = b"\x0a" + _varint(n)
        add(head)
        add(r)
    return b"".join(parts)


def _tensor_scalar(t) -> float | None:
    dt = t.dtype
    if t.float_val:
        return float(t.float_val[0])
    if t.double_val:
        return float(t.double_val[0])
    if t.int_val:
        return float(t.int_val[0])
    if t.int64_val:
        return float(t.int64_val[0])
    c = t.tensor_content
    if c:
        fmt = {_DT_FLOAT: "<f", _DT_DOUBLE: "<d", _DT_INT32: "<i", _DT_INT64: "<q",
               _DT_HALF: "<e"}.get(dt)
        if fmt and len(c) >= struct.calcsize(fmt):
            return float(struct.unpack_from(fmt, c)[0])
    return None


def read_events(path: Path, history: RunHistory, *, verify_crc: bool = False) -> dict[str, str]:
    """Add every scalar of one event file to ``history``; return its text summaries.

    Old-style ``simple_value`` and new-style tensor scalars (plugin ``scalars``) are both
    read; ``text`` plugin values are returned as tag → last text.
    """
    buf = path.read_bytes()
    records = None if verify_crc else _fast_scalars(buf, history)
    if records is None:
        records = iter_records(buf, verify_crc=verify_crc, name=str(path))
    batch_cls = _event_classes()
    batch = batch_cls()
    batch.ParseFromString(_wrap(records))
    texts: dict[str, str] = {}
    raw = history.raw_series
    for ev in batch.event:
        if not ev.HasField("summary"):
            continue
        step = ev.step
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                value = v.simple_value
            elif v.HasField("tensor"):
                plugin = v.metadata.plugin_data.plugin_name if v.HasField("metadata") else ""
                t = v.tensor
                if plugin == "text" or t.dtype == _DT_STRING:
                    if t.string_val:
                        texts[v.tag] = t.string_val[0].decode("utf-8", "replace")
                    continue
                value = _tensor_scalar(t)
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
    return texts


def _fast_scalars(buf: bytes, history: RunHistory) -> list[bytes] | None:
    """Decode plain old-style scalars with numpy; return the other records' payloads.

    None when the vectorised framing is unsure (then every record takes the exact path).
    Within a tag, fast-path points precede protobuf-path points; ``finalize`` orders by
    step.
    """
    from lbconvert.audit.read import tfrecord_fast

    framed = tfrecord_fast.frame(buf)
    if framed is None:
        return None
    offsets, lengths = framed
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


def read(run_dir: Path, *, verify_crc: bool = False) -> RunHistory:
    """Read all event files of a run (several files and subfolders are merged by tag).

    A subfolder's scalars are tagged ``sub/tag`` when the same tag appears in several
    subfolders (e.g. Keras-style ``train/`` and ``validation/`` writers). Text summaries
    that hold JSON (HF's ``args/text_summary``) fill the config.
    """
    history = RunHistory(path=str(run_dir), format=NAME)
    history.step_note = ("TensorBoard steps are taken as optimizer updates (the global_step "
                         "convention of SummaryWriter, HF and Lightning loggers)")
    files = event_files(run_dir)
    by_folder: dict[Path, list[Path]] = {}
    for f in files:
        by_folder.setdefault(f.parent, []).append(f)
    subs: list[tuple[str, RunHistory]] = []
    for folder, fs in sorted(by_folder.items()):
        sub = RunHistory(path=str(folder), format=NAME)
        texts: dict[str, str] = {}
        for f in fs:
            texts.update(read_events(f, sub, verify_crc=verify_crc))
        subs.append((folder.relative_to(run_dir).as_posix(), sub))
        for tag, text in texts.items():
            _apply_text(history, tag, text)
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
