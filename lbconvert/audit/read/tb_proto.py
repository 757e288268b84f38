"""The few TensorBoard protobuf messages the reader needs, declared in a private pool.

Field numbers as in tensorboard/compat/proto (Event, Summary, TensorProto) and
tensorboard/plugins/hparams/plugin_data.proto; the installed protobuf runtime parses them,
so neither TensorFlow nor the ``tensorboard`` package is needed.
"""

from __future__ import annotations

import struct
from functools import lru_cache

DT_FLOAT, DT_DOUBLE, DT_INT32, DT_STRING, DT_INT64, DT_HALF = 1, 2, 3, 7, 9, 19


@lru_cache(maxsize=1)
def event_classes():
    """(EventBatch, Event, HParamsPluginData) message classes."""
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
    # tensorboard/plugins/hparams/plugin_data.proto; google.protobuf.Value's wire layout.
    hv = msg("HValue", [("null_value", 1, F.TYPE_INT32, OPT, None),
                        ("number_value", 2, F.TYPE_DOUBLE, OPT, None),
                        ("string_value", 3, F.TYPE_STRING, OPT, None),
                        ("bool_value", 4, F.TYPE_BOOL, OPT, None)])
    hv.oneof_decl.add(name="kind")
    for f in hv.field:
        f.oneof_index = 0
    msg("HEntry", [("key", 1, F.TYPE_STRING, OPT, None),
                   ("value", 2, F.TYPE_MESSAGE, OPT, "HValue")])
    msg("SessionStartInfo", [("hparams", 1, F.TYPE_MESSAGE, REP, "HEntry"),
                             ("group_name", 4, F.TYPE_STRING, OPT, None)])
    msg("HParamsPluginData", [("version", 1, F.TYPE_INT32, OPT, None),
                              ("session_start_info", 3, F.TYPE_MESSAGE, OPT,
                               "SessionStartInfo")])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    get = message_factory.GetMessageClass
    return (get(pool.FindMessageTypeByName("lbconvert_tb.EventBatch")),
            get(pool.FindMessageTypeByName("lbconvert_tb.Event")),
            get(pool.FindMessageTypeByName("lbconvert_tb.HParamsPluginData")))


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


def wrap(records: list[bytes]) -> bytes:
    """Record payloads re-framed as one EventBatch message (one native parse call)."""
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


def tensor_scalar(t) -> float | None:
    """The first value of a scalar TensorProto, or None."""
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
        fmt = {DT_FLOAT: "<f", DT_DOUBLE: "<d", DT_INT32: "<i", DT_INT64: "<q",
               DT_HALF: "<e"}.get(dt)
        if fmt and len(c) >= struct.calcsize(fmt):
            return float(struct.unpack_from(fmt, c)[0])
    return None
