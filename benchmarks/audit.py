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

Issue 22's rows (``--sweep N``, ``--csv-rows R``, either skips the event-file table): a
sweep folder of N small Lightning CSV runs (``metrics.csv`` of 100 rows + ``hparams.yaml``,
4 batch sizes, half of them naive) audited in one fresh process, target 10,000 runs in
≤ 30 s on 2 cores; and one ``metrics.csv`` of R rows (2,000,000 ≈ 40 MB) whose traced peak
(tracemalloc) must stay ≤ 2× the file's size::

    .venv/bin/python benchmarks/audit.py --sweep 10000 --csv-rows 2000000 [--cache DIR]
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


SWEEP = r"""
import json, resource, sys, time, tracemalloc
from lbconvert.audit.pipeline import audit_runs
from lbconvert.audit.render import render
which, run = sys.argv[1], sys.argv[2]
if which == "csv":
    import numpy, yaml  # imported by the reader anyway: not counted
    tracemalloc.start()
t0, c0 = time.perf_counter(), time.process_time()
rep = audit_runs([run])
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
peak = tracemalloc.get_traced_memory()[1] if which == "csv" else None
t1 = time.perf_counter()
summary = render(rep, "markdown").count("\n") if which == "sweep" else 0
print(json.dumps({"wall": wall, "cpu": cpu, "runs": len(rep.runs), "traced_peak": peak,
                  "render": time.perf_counter() - t1,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "errors": rep.counts()["error"]}))
"""


def write_sweep(root: Path, n: int) -> None:
    """``n`` small Lightning CSV runs: batch 16/64/256/1024, LR as is (naive) or ×√M."""
    for i in range(n):
        d = root / f"trial_{i:05d}"
        d.mkdir(parents=True, exist_ok=True)
        batch = (16, 64, 256, 1024)[i % 4]
        lr = 0.05 if (i // 4) % 2 == 0 else 0.05 * math.sqrt(batch / 16)
        (d / "hparams.yaml").write_text(f"batch_size: {batch}\nlr: {lr}\nmax_epochs: 10\n"
                                        "dataset_size: 3200\n")
        total = math.ceil(3200 / batch) * 10
        every = max(1, total // 100)
        rows = "".join(f"{s // max(1, total // 10)},{lr},{s},{2.0 / math.log(s + 3):.5f}\n"
                       for s in range(0, total, every))
        (d / "metrics.csv").write_text("epoch,lr-SGD,step,train_loss_step\n" + rows)


def write_big_csv(run: Path, rows: int) -> None:
    """One Lightning-style metrics.csv: loss every row, LR every 1000th."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "hparams.yaml").write_text("batch_size: 256\nlr: 0.1\nmax_epochs: 100\n")
    with (run / "metrics.csv").open("w") as fh:
        fh.write("epoch,step,train_loss,lr-SGD\n")
        for s in range(rows):
            fh.write(f"{s // 20000},{s},{2 / math.log(s + 3):.6f},"
                     f"{'0.1' if s % 1000 == 0 else ''}\n")


def sweep_benchmarks(args) -> None:
    """Issue 22's rows: a sweep of ``--sweep`` runs and a ``--csv-rows`` metrics.csv."""
    with tempfile.TemporaryDirectory() as tmp:
        base = args.cache or Path(tmp)
        print("| case | size | wall s | CPU s | summary render s | peak |")
        print("|---|---|---|---|---|---|")
        if args.sweep:
            root = base / f"sweep{args.sweep}"
            if not (root / f"trial_{args.sweep - 1:05d}").is_dir():
                write_sweep(root, args.sweep)
            r = _measure_sweep("sweep", root)
            print(f"| sweep of small Lightning CSV runs | {r['runs']} runs | {r['wall']:.1f} | "
                  f"{r['cpu']:.1f} | {r['render']:.1f} | {r['rss']:.0f} MB RSS |")
        if args.csv_rows:
            run = base / f"csv{args.csv_rows}"
            if not (run / "metrics.csv").is_file():
                write_big_csv(run, args.csv_rows)
            size = (run / "metrics.csv").stat().st_size / 1e6
            r = _measure_sweep("csv", run)
            print(f"| one metrics.csv | {args.csv_rows:,} rows, {size:.1f} MB | {r['wall']:.1f} "
                  f"| {r['cpu']:.1f} | - | {r['traced_peak'] / 1e6:.1f} MB traced "
                  f"({r['traced_peak'] / 1e6 / size:.2f}× the file), {r['rss']:.0f} MB RSS |")


def _measure_sweep(which: str, run: Path) -> dict:
    p = subprocess.run([sys.executable, "-c", SWEEP, which, str(run)], capture_output=True,
                       text=True, check=True)
    return json.loads(p.stdout.strip().splitlines()[-1])


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
    ap.add_argument("--sweep", type=int, default=0, help="audit a sweep of N small runs")
    ap.add_argument("--csv-rows", type=int, default=0, help="audit one metrics.csv of R rows")
    args = ap.parse_args()
    if args.sweep or args.csv_rows:
        sweep_benchmarks(args)
        return
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
