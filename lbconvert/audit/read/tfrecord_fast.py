"""Vectorised (numpy) fast path for TensorBoard event files of plain scalars.

Python-level protobuf access costs ~microseconds per event; a run with a million scalars
needs better. Two steps, each with a fallback to the exact per-record path:

1. framing: every record of an event file starts with a uint64 length whose high 4 bytes
   are 0 and, because SummaryWriter always sets ``wall_time`` (field 1, wire type 1), a
   payload whose first byte is 0x09. Positions meeting both are candidates; the real
   records are the candidates that chain from byte 0 (``next = start + 16 + length``) to
   the end of the file. If the filtered candidates do not tile the file exactly, we give up
   (the caller frames record by record).
2. decoding: records laid out exactly as an old-style scalar event —
   ``09 <f64 wall_time> 10 <varint step> 2a <n> 0a <n> 0a <n> <tag> 15 <f32 value>`` — are
   decoded with array arithmetic; every other record (new-style tensor scalars, text,
   graphs) is left to the protobuf path.
"""

from __future__ import annotations

import numpy as np

# Event fields 2..10 with their wire types (step varint; the others length-delimited).
_EVENT_FIELD_TAGS = np.array([0x10, 0x1A, 0x22, 0x2A, 0x32, 0x3A, 0x42, 0x4A, 0x52],
                             dtype=np.uint8)
_WALL, _STEP, _SUMMARY, _VALUE, _TAG, _SIMPLE = 0x09, 0x10, 0x2A, 0x0A, 0x0A, 0x15
_WINDOW = 1 << 22  # bytes compared at a time when looking for record starts


def frame(buf: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    """(payload offsets, payload lengths) of every complete record, or None if unsure."""
    b = np.frombuffer(buf, dtype=np.uint8)
    n = b.size
    if n < 17:
        return None
    m = n - 16
    # Window by window (a full-size boolean array would cost the file's size): the 0x09
    # bytes, then the zero high length bytes and the next Event field at those few hits.
    parts = []
    for lo in range(0, m, _WINDOW):
        h = np.flatnonzero(b[12 + lo:12 + min(lo + _WINDOW, m)] == _WALL) + lo
        h = h[(b[h + 4] | b[h + 5] | b[h + 6] | b[h + 7]) == 0]
        if h.size:
            # after the 8-byte wall_time comes another Event field (step, file_version, ...)
            nxt = b[np.minimum(h + 21, n - 1)]
            h = h[np.isin(nxt, _EVENT_FIELD_TAGS) | (h + 21 >= n)]
        parts.append(h)
    hits = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    # Records without wall_time (a hand-made first event, say) are framed one by one
    # until the first candidate.
    head_off, head_len, pos = [], [], 0
    def is_candidate(p: int) -> bool:
        i = int(np.searchsorted(hits, p))
        return i < hits.size and int(hits[i]) == p

    while pos < m and not is_candidate(pos) and len(head_off) < 1000:
        length = int.from_bytes(buf[pos:pos + 8], "little")
        if pos + 16 + length > n:
            break
        head_off.append(pos + 12)
        head_len.append(length)
        pos += 16 + length
    starts = hits[hits >= pos]
    if starts.size == 0 or starts[0] != pos:
        return None
    lens = (b[starts].astype(np.int64) | (b[starts + 1].astype(np.int64) << 8) |
            (b[starts + 2].astype(np.int64) << 16) | (b[starts + 3].astype(np.int64) << 24))
    ends = starts + 16 + lens
    # Keep candidates whose successor is a candidate (or the file end); false positives
    # inside payloads almost never chain, and the tiling check below catches the rest.
    keep = np.ones(starts.size, dtype=bool)
    for _ in range(8):
        idx = np.searchsorted(starts, ends)
        ok = (ends <= n) & (((idx < starts.size) & (starts[np.minimum(idx, starts.size - 1)]
                                                     == ends)) | (ends == n))
        ok &= keep
        if np.array_equal(ok, keep):
            break
        keep = ok
        valid = starts[keep]
        # a candidate whose successor was dropped must go too
        idx2 = np.searchsorted(valid, ends)
        hit = (idx2 < valid.size) & (valid[np.minimum(idx2, valid.size - 1)] == ends)
        keep &= hit | (ends == n)
    s, e, ln = starts[keep], ends[keep], lens[keep]
    if s.size == 0 or s[0] != pos or np.any(s[1:] != e[:-1]) or e[-1] > n:
        return None
    if e[-1] != n and n - e[-1] >= 16:
        return None  # more than a truncated tail is unaccounted for
    offsets = np.concatenate([np.asarray(head_off, dtype=np.int64), s + 12])
    return offsets, np.concatenate([np.asarray(head_len, dtype=np.int64), ln])


def _varint(b: np.ndarray, pos: np.ndarray, limit: int = 10):
    """Decode a varint at each ``pos``: (value, number of bytes); bytes = 0 if too long."""
    val = np.zeros(pos.size, dtype=np.uint64)
    nbytes = np.zeros(pos.size, dtype=np.int64)
    done = np.zeros(pos.size, dtype=bool)
    top = b.size - 1
    for k in range(limit):
        byte = b[np.minimum(pos + k, top)].astype(np.uint64)
        active = ~done
        val[active] |= (byte[active] & np.uint64(0x7F)) << np.uint64(7 * k)
        ends = active & (byte < 0x80)
        nbytes[ends] = k + 1
        done |= ends
        if done.all():
            break
    return val, nbytes


def decode_simple_scalars(buf: bytes, offsets: np.ndarray, lengths: np.ndarray):
    """Decode old-style scalar records.

    Returns ``(fast, steps, values, tag_index, tags)``: ``fast`` marks the records decoded
    here; for them ``steps`` (int64), ``values`` (float64 from float32) and
    ``tag_index`` into ``tags`` (list of str) are given in record order.
    """
    b = np.frombuffer(buf, dtype=np.uint8)
    top = b.size - 1

    def at(p):
        return b[np.minimum(p, top)]

    fast = (lengths >= 20) & (at(offsets) == _WALL) & (at(offsets + 9) == _STEP)
    step, nb = _varint(b, offsets + 10)
    fast &= nb > 0
    p = offsets + 10 + nb
    fast &= at(p) == _SUMMARY
    l1 = at(p + 1).astype(np.int64)
    fast &= (l1 < 0x80) & (at(p + 2) == _VALUE)
    l2 = at(p + 3).astype(np.int64)
    fast &= (l2 < 0x80) & (l1 == l2 + 2) & (at(p + 4) == _TAG)
    lt = at(p + 5).astype(np.int64)
    fast &= (lt < 0x80) & (l2 == lt + 2 + 5)
    vpos = p + 6 + lt
    fast &= (at(vpos) == _SIMPLE) & (vpos + 5 == offsets + lengths)
    idx = np.flatnonzero(fast)
    if idx.size == 0:
        return fast, np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int64), []
    vp = vpos[idx] + 1
    f32 = np.ndarray(shape=(b.size - 3,), dtype="<f4", buffer=buf, strides=(1,))
    values = f32[vp].astype(np.float64)
    tstart, tlen = (p + 6)[idx], lt[idx]
    width = int(tlen.max())
    # Group tags by a 64-bit polynomial hash of their bytes (sorting integers is much
    # cheaper than sorting byte strings) and confirm with a second, independent hash
    # being constant per group; on any disagreement group the strings themselves.
    if width <= 16:
        # two unaligned 8-byte reads per tag instead of one gather per byte
        w0 = _u64_at(buf, tstart)
        w1 = _u64_at(buf, tstart + 8)
        w0 &= _low_bytes_mask(np.minimum(tlen, 8))
        w1 &= _low_bytes_mask(np.clip(tlen - 8, 0, 8))
        with np.errstate(over="ignore"):
            t64 = tlen.astype(np.uint64)
            h1 = w0 * np.uint64(1099511628211) ^ w1 * np.uint64(0xC2B2AE3D27D4EB4F) ^ t64
            h2 = (w0 ^ np.uint64(0x9E3779B97F4A7C15)) * np.uint64(0xFF51AFD7ED558CCD) + \
                (w1 ^ t64) * np.uint64(0xC4CEB9FE1A85EC53)
    else:
        h1 = tlen.astype(np.uint64)
        h2 = h1.copy()
        with np.errstate(over="ignore"):
            for k in range(width):
                col = np.where(k < tlen, b[np.minimum(tstart + k, top)], 0).astype(np.uint64)
                h1 = h1 * np.uint64(1099511628211) + col
                h2 = (h2 ^ col) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(k + 1)
    _, first, inverse = np.unique(h1, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not np.array_equal(h2, h2[first[inverse]]):
        cols = np.arange(width)
        mat = b[np.minimum(tstart[:, None] + cols[None, :], top)]
        mat = np.where(cols[None, :] < tlen[:, None], mat, 0).astype(np.uint8)
        keys = np.ascontiguousarray(mat).view(f"S{width}").reshape(-1)
        uniq, inverse = np.unique(keys, return_inverse=True)
        tags = [u.decode("utf-8", "replace") for u in uniq.tolist()]
        return fast, step[idx].astype(np.int64), values, inverse.reshape(-1), tags
    tags = [buf[int(tstart[i]):int(tstart[i] + tlen[i])].decode("utf-8", "replace")
            for i in first.tolist()]
    return fast, step[idx].astype(np.int64), values, inverse, tags


def _u64_at(buf: bytes, pos: np.ndarray) -> np.ndarray:
    """Little-endian uint64 at arbitrary byte positions (bytes past the end read as 0)."""
    padded = buf if len(buf) >= 8 else buf + b"\0" * 8
    # An overlapping, byte-strided view: element i is bytes i..i+7.
    view = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    last = view.size - 1
    out = view[np.minimum(pos, last)].astype(np.uint64)
    over = pos > last
    if over.any():  # within 8 bytes of the end: assemble from single bytes
        b = np.frombuffer(padded, dtype=np.uint8)
        for i in np.flatnonzero(over).tolist():
            chunk = bytes(b[int(pos[i]):int(pos[i]) + 8])
            out[i] = int.from_bytes(chunk.ljust(8, b"\0"), "little")
    return out


def _low_bytes_mask(nbytes: np.ndarray) -> np.ndarray:
    """uint64 masks keeping the low ``nbytes`` bytes (0..8)."""
    table = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)
    return table[nbytes]
