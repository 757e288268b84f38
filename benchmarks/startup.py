"""Start-up time of `lbconvert --help` against `python -c pass`, in the same run.

The CLI must not import torch at start-up (DESIGN.md); this shows what a user waits for.
Run: python benchmarks/startup.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _time(cmd: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    py = sys.executable
    cases = {
        "python -c pass": [py, "-c", "pass"],
        "python -c 'import torch'": [py, "-c", "import torch"],
        "lbconvert --help": [py, "-m", "lbconvert", "--help"],
        "lbconvert plan (example)": [py, "-m", "lbconvert", "plan", "--config",
                                     "fixtures/examples/cifar_resnet.yaml", "--target-batch",
                                     "8192"],
    }
    _time(cases["lbconvert --help"], 2)  # warm the filesystem cache
    base = None
    print(f"{'command':32} {'median s':>9} {'min s':>7} {'vs python':>10}")
    for name, cmd in cases.items():
        t = _time(cmd, args.repeat)
        med = statistics.median(t)
        base = base or med
        print(f"{name:32} {med:9.3f} {min(t):7.3f} {med / base:9.1f}x"
              f"   (+{med - base:.3f} s over python)")


if __name__ == "__main__":
    main()
