"""TFRecord framing with TensorBoard's checks: length and data masked CRC-32C.

A TFRecord is ``uint64 length | uint32 masked_crc32c(length) | data | uint32
masked_crc32c(data)`` (little endian). Like TensorBoard's reader we keep every record up to
the first damage and stop there; unlike it we say where: :class:`Damage` names the file,
the byte offset and how many records were kept. Checksums are computed with numpy for all
records at once (one pass per byte position over the records still that long), so the
check costs a fraction of the parse.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_MASK_DELTA = 0xA282EAD8
_VECTOR_MAX = 1024  # records longer than this are checked one by one
_CHUNK = 1 << 16  # records checked (and decoded) per vectorised pass


@dataclass
class Damage:
    """Where reading an event file stopped, and why."""

    file: str
    offset: int
    records_kept: int
    reason: str  # "truncated" | "length checksum" | "data checksum" | "not a record"
    size: int = 0

    @property
    def mid_file(self) -> bool:
        """True for damage other than a cut final record (a run still being written)."""
        return self.reason != "truncated"

    def message(self) -> str:
        """One line: file, byte offset, records kept."""
        what = {"truncated": "ends inside a record (cut off or still being written)",
                "length checksum": "has a corrupt record length (CRC mismatch)",
                "data checksum": "has a corrupt record (data CRC mismatch)",
                "not a record": "holds bytes that are not a TFRecord"}[self.reason]
        return (f"{self.file} {what} at byte {self.offset} of {self.size}: read the "
                f"{self.records_kept} record(s) before it, ignored the rest")

    def to_dict(self) -> dict:
        """JSON-safe dict."""
        return {"file": self.file, "offset": self.offset, "records_kept": self.records_kept,
                "reason": self.reason, "size": self.size, "message": self.message()}


@lru_cache(maxsize=1)
def _table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table[i] = c
    return table


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC-32C (Castagnoli) of one byte string."""
    table = _table().tolist()
    crc = 0xFFFFFFFF
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def masked_crc32c_many(b: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of ``b[o:o+n]`` for every (o, n), as uint32, vectorised over records."""
    out = np.zeros(offsets.size, dtype=np.uint32)
    if offsets.size == 0:
        return out
    table = _table()
    long = lengths > _VECTOR_MAX
    for i in np.flatnonzero(long).tolist():
        o, n = int(offsets[i]), int(lengths[i])
        out[i] = masked_crc32c(b[o:o + n].tobytes())
    short = np.flatnonzero(~long)
    if short.size:
        order = short[np.argsort(-lengths[short], kind="stable")]
        offs, lens = offsets[order], lengths[order]
        crc = np.full(order.size, 0xFFFFFFFF, dtype=np.uint32)
        # lens is descending: the records at least k+1 bytes long are a prefix
        counts = np.searchsorted(-lens, -np.arange(int(lens[0])), "left")
        for k, m in enumerate(counts.tolist()):
            c = crc[:m]
            byte = b[offs[:m] + k]
            crc[:m] = table[(c ^ byte) & 0xFF] ^ (c >> 8)
        crc ^= np.uint32(0xFFFFFFFF)
        c64 = crc.astype(np.uint64)
        masked = (((c64 >> 15) | (c64 << 17)) + _MASK_DELTA) & 0xFFFFFFFF
        out[order] = masked.astype(np.uint32)
    return out


def frame_records(buf: bytes, name: str = "") -> tuple[np.ndarray, np.ndarray, Damage | None]:
    """(payload offsets, payload lengths) of the intact records, and the damage if any.

    Records are framed by walking the length fields, then both checksums of every record
    are verified (vectorised, in chunks); reading stops at the first bad record.
    """
    n = len(buf)
    offsets, lengths, stop, reason = _frame_sequential(buf)
    b = np.frombuffer(buf, dtype=np.uint8)
    for lo in range(0, offsets.size, _CHUNK):  # chunks keep the temporaries small
        o, ln = offsets[lo:lo + _CHUNK], lengths[lo:lo + _CHUNK]
        len_ok = masked_crc32c_many(b, o - 12, np.full(o.size, 8, np.int64)) == _u32(b, o - 4)
        data_ok = masked_crc32c_many(b, o, ln) == _u32(b, o + ln)
        bad = np.flatnonzero(~(len_ok & data_ok))
        if bad.size:
            i = int(bad[0])
            stop = int(o[i]) - 12
            reason = "length checksum" if not len_ok[i] else "data checksum"
            offsets, lengths = offsets[:lo + i], lengths[:lo + i]
            break
    damage = None
    if stop is not None:
        if reason == "truncated" and stop + 12 <= n and \
                masked_crc32c(buf[stop:stop + 8]) != int.from_bytes(buf[stop + 8:stop + 12],
                                                                    "little"):
            # the length that ran past the end is itself damaged (or never was a length)
            reason = "not a record" if stop == 0 else "length checksum"
        damage = Damage(name, stop, int(offsets.size), reason, n)
    return offsets, lengths, damage


def _u32(b: np.ndarray, pos: np.ndarray) -> np.ndarray:
    p = pos.astype(np.int64)
    return (b[p].astype(np.uint32) | (b[p + 1].astype(np.uint32) << 8) |
            (b[p + 2].astype(np.uint32) << 16) | (b[p + 3].astype(np.uint32) << 24))


def _frame_sequential(buf: bytes):
    """Walk the length fields from byte 0 (exact; 8 bytes per record kept, ~0.2 µs each)."""
    import array
    import struct

    n = len(buf)
    offs, lens = array.array("q"), array.array("q")
    add_off, add_len = offs.append, lens.append
    unpack = struct.Struct("<Q").unpack_from
    pos = 0
    while pos + 12 <= n:
        (length,) = unpack(buf, pos)
        end = pos + 16 + length
        if end > n:
            break
        add_off(pos + 12)
        add_len(length)
        pos = end
    stop = pos if pos < n else None
    return (np.frombuffer(offs, dtype=np.int64), np.frombuffer(lens, dtype=np.int64), stop,
            "truncated" if stop is not None else None)
