"""Audit speed and memory on a large TensorBoard event file, against EventAccumulator.

Issue 13's target: a 38 MB event file (≈ 750k scalars written by ``SummaryWriter``) audits in
≤ 2 s and ≤ 150 MB peak memory. The file is written once (``--cache DIR`` keeps it) by
``torch.utils.tensorboard.SummaryWriter`` when torch is installed (4 tags, ``add_scalar``),
else by an equivalent writer built on the reader's own protobuf classes. Each measurement runs
in a fresh Python process, so peak RSS (``VmHWM`` on Linux) is that reader's alone; RSS growth
is the peak minus the RSS after imports. Printed as a table::

    .venv/bin/python benchmarks/audit.py [--scalars 750000] [--cache DIR] [--repeats 3]

CPU time is printed beside wall time: on a shared machine the wall clock includes waiting
for a core. EventAccumulator runs with ``size_guidance`` 0 (every point kept, as the audit
does); ``--no-accumulator`` skips it (it needs the ``tensorboard`` package).
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TAGS = ["train/loss", "lr", "val/loss", "grad_norm"]

MEASURE = r"""
import json, resource, sys, time
which, run = sys.argv[1], sys.argv[2]
def rss():
    # VmHWM: this process's peak RSS (ru_maxrss would carry the parent's over fork/exec)
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
if which == "lbconvert":
    from lbconvert.audit.pipeline import audit_runs
    import numpy, google.protobuf  # imported by the reader anyway: not counted as growth
    base = rss()
    t0, c0 = time.perf_counter(), time.process_time()
    rep = audit_runs([run], batch_size=4096)
    n = sum(len(s) for s in rep.runs[0].history.raw_series.values())
else:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    base = rss()
    t0, c0 = time.perf_counter(), time.process_time()
    acc = EventAccumulator(run, size_guidance={"scalars": 0})
    acc.Reload()
    n = sum(len(acc.Scalars(t)) for t in acc.Tags()["scalars"])
print(json.dumps({"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0,
                  "peak": rss(), "growth": rss() - base, "points": n}))
"""


def write_summarywriter(run: Path, n: int) -> None:
    """``n`` scalars over 4 tags with torch's SummaryWriter (old-style simple_value)."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(run), max_queue=10_000, flush_secs=3600)
    for i in range(n):
        step = i // len(TAGS) + 1
        w.add_scalar(TAGS[i % len(TAGS)], 2.0 / math.log(step + 2.0), step)
    w.close()


def write_proto(run: Path, n: int) -> None:
    """The same records built with the reader's own protobuf classes and CRCs."""
    from lbconvert.audit.read.tb_proto import event_classes
    from lbconvert.audit.read.tfrecord import masked_crc32c

    Event = event_classes()[1]
    out = bytearray()

    def record(data: bytes) -> None:
        head = struct.pack("<Q", len(data))
        out.extend(head + struct.pack("<I", masked_crc32c(head)) + data +
                   struct.pack("<I", masked_crc32c(data)))

    record(Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
    for i in range(n):
        step = i // len(TAGS) + 1
        ev = Event(wall_time=time.time(), step=step)
        v = ev.summary.value.add(tag=TAGS[i % len(TAGS)])
        v.simple_value = 2.0 / math.log(step + 2.0)
        record(ev.SerializeToString())
    (run / "events.out.tfevents.1.bench").write_bytes(bytes(out))


def measure(which: str, run: Path) -> dict:
    """One measurement in a fresh interpreter."""
    p = subprocess.run([sys.executable, "-c", MEASURE, which, str(run)], capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    """Write (or reuse) the event file, then time both readers; print a Markdown table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--scalars", type=int, default=750_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-accumulator", action="store_true")
    ap.add_argument("--writer", choices=("summarywriter", "proto"), default=None)
    ap.add_argument("--cache", type=Path, default=None,
                    help="reuse (or create) the run folder here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = args.cache or Path(tmp) / "run"
        run.mkdir(parents=True, exist_ok=True)
        files = list(run.glob("events.out.tfevents.*"))
        if not files:
            writer = args.writer
            if writer is None:
                try:
                    import torch.utils.tensorboard  # noqa: F401
                    writer = "summarywriter"
                except ImportError:
                    writer = "proto"
            t0 = time.perf_counter()
            (write_summarywriter if writer == "summarywriter" else write_proto)(run, args.scalars)
            files = list(run.glob("events.out.tfevents.*"))
            print(f"wrote {args.scalars} scalars with {writer} "
                  f"({sum(f.stat().st_size for f in files) / 1e6:.1f} MB) in "
                  f"{time.perf_counter() - t0:.1f} s")
        size = sum(f.stat().st_size for f in files) / 1e6
        readers = ["lbconvert"] + ([] if args.no_accumulator else ["accumulator"])
        label = {"lbconvert": "lbconvert audit (CRC-checked read + all rules)",
                 "accumulator": "EventAccumulator(size_guidance=0), read only"}
        print(f"\nevent file: {size:.1f} MB; best of {args.repeats} fresh processes\n")
        print("| reader | points | wall s | CPU s | peak RSS MB | RSS growth MB |")
        print("|---|---|---|---|---|---|")
        for which in readers:
            runs = [measure(which, run) for _ in range(args.repeats)]
            best = min(runs, key=lambda r: r["wall"])
            print(f"| {label[which]} | {best['points']} | {best['wall']:.2f} | "
                  f"{min(r['cpu'] for r in runs):.2f} | {min(r['peak'] for r in runs):.0f} | "
                  f"{min(r['growth'] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
