"""TFRecord framing and masked CRC-32C: the vectorised checksum equals the scalar one."""

from __future__ import annotations

import random

import numpy as np

from lbconvert.audit.read.tfrecord import frame_records, masked_crc32c, masked_crc32c_many


def _record(data: bytes) -> bytes:
    head = len(data).to_bytes(8, "little")
    return (head + masked_crc32c(head).to_bytes(4, "little") + data +
            masked_crc32c(data).to_bytes(4, "little"))


def _crc32c_bitwise(data: bytes) -> int:
    """CRC-32C bit by bit (no table), then TFRecord's mask: an independent reference."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_crc_check_value_and_vectorised_equals_bitwise():
    crc = 0xE3069283  # CRC-32C("123456789"), the standard check value
    assert masked_crc32c(b"123456789") == (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    rng = random.Random(0)
    datas = [bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 7, 60, 1500, 3000])))
             for _ in range(40)]
    buf = b"".join(datas)
    offsets = np.cumsum([0] + [len(d) for d in datas[:-1]]).astype(np.int64)
    lengths = np.array([len(d) for d in datas], dtype=np.int64)
    got = masked_crc32c_many(np.frombuffer(buf, np.uint8), offsets, lengths)
    assert got.tolist() == [_crc32c_bitwise(d) for d in datas]


def test_frames_hand_built_records_and_locates_each_kind_of_damage():
    payloads = [b"\x09" + bytes(8) + b"\x10" + bytes([i]) for i in range(5)] + [b"x" * 300]
    good = b"".join(_record(p) for p in payloads)
    offsets, lengths, damage = frame_records(good, "f")
    assert damage is None and lengths.tolist() == [len(p) for p in payloads]
    third = sum(len(_record(p)) for p in payloads[:3])
    bad = bytearray(good)
    bad[third + 13] ^= 1  # a data byte of record 3
    _, _, d = frame_records(bytes(bad), "f")
    assert (d.reason, d.offset, d.records_kept) == ("data checksum", third, 3)
    bad = bytearray(good)
    bad[third] ^= 1  # its length
    _, _, d = frame_records(bytes(bad), "f")
    assert (d.reason, d.offset, d.records_kept) == ("length checksum", third, 3)
    _, _, d = frame_records(good[:third + 5], "f")
    assert (d.reason, d.offset, d.records_kept) == ("truncated", third, 3)
    _, _, d = frame_records(bytes(range(200)), "f")
    assert (d.reason, d.offset, d.records_kept) == ("not a record", 0, 0)
    assert frame_records(b"", "f")[2] is None
