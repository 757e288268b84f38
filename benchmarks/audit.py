"""Time to audit a TensorBoard run with 1M logged scalars (goal ≤ 2 s).

Writes one event file of N scalar events (4 tags, old-style ``simple_value``) with valid
masked CRC-32C in a temp dir, then times ``lbconvert.audit.pipeline.audit_runs`` on it
(read + all rules), and, for comparison, ``EventAccumulator`` with ``size_guidance`` 0
(every point kept) reading the same file. Usage::

    .venv/bin/python benchmarks/audit.py [--scalars 1000000] [--no-accumulator] [--cache DIR]

CPU time (``time.process_time``) is printed beside wall time: on a shared machine the
wall clock includes waiting for a core.
"""

from __future__ import annotations

import argparse
import math
import struct
import tempfile
import time
from pathlib import Path


def write_events(path: Path, n: int) -> None:
    """An event file with ``n`` scalars over 4 tags, built with the reader's own proto."""
    from lbconvert.audit.read.tensorboard import _event_classes, masked_crc32c

    batch_cls = _event_classes()
    Event = batch_cls().event.add().__class__
    tags = ["train/loss", "lr", "val/loss", "grad_norm"]
    out = bytearray()

    def record(data: bytes) -> None:
        head = struct.pack("<Q", len(data))
        out.extend(head + struct.pack("<I", masked_crc32c(head)) + data +
                   struct.pack("<I", masked_crc32c(data)))

    record(Event(wall_time=0.0, file_version="brain.Event:2").SerializeToString())
    for i in range(n):
        step = i // len(tags) + 1
        ev = Event(wall_time=1.0 + i, step=step)
        v = ev.summary.value.add(tag=tags[i % len(tags)])
        v.simple_value = 2.0 / math.log(step + 2.0) if i % 4 != 1 else 0.1
        record(ev.SerializeToString())
    path.write_bytes(bytes(out))


def main() -> None:
    """Generate (or reuse), then time the audit and (optionally) EventAccumulator."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--scalars", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-accumulator", action="store_true")
    ap.add_argument("--cache", type=Path, default=None,
                    help="reuse (or create) the event file in this folder")
    args = ap.parse_args()
    from lbconvert.audit.pipeline import audit_runs

    with tempfile.TemporaryDirectory() as tmp:
        run = args.cache or Path(tmp) / "run"
        run.mkdir(parents=True, exist_ok=True)
        event = run / "events.out.tfevents.1.bench"
        if not event.exists():
            t0 = time.perf_counter()
            write_events(event, args.scalars)
            took = time.perf_counter() - t0
            print(f"wrote {args.scalars} scalars ({event.stat().st_size / 1e6:.1f} MB) "
                  f"in {took:.1f} s")
        wall, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            rep = audit_runs([run], batch_size=4096)
            wall.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        pts = sum(len(s) for s in rep.runs[0].history.raw_series.values())
        print("| reader | scalars read | best wall s | median wall s | best CPU s |")
        print("|---|---|---|---|---|")
        print(f"| lbconvert audit (read + 9 rules) | {pts} | {min(wall):.2f} | "
              f"{sorted(wall)[len(wall) // 2]:.2f} | {min(cpu):.2f} |")
        if not args.no_accumulator:
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            t0, c0 = time.perf_counter(), time.process_time()
            acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
            acc.Reload()
            n = sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])
            print(f"| EventAccumulator(size_guidance=0), read only | {n} | "
                  f"{time.perf_counter() - t0:.2f} | (1 run) | {time.process_time() - c0:.2f} |")


if __name__ == "__main__":
    main()
