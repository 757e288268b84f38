"""Cost of DiffusionMonitor in a training step: step time with it / without it.

    PYTHONPATH=. python benchmarks/monitor_overhead.py                    # ResNet-50, CPU
    PYTHONPATH=. python benchmarks/monitor_overhead.py --model resnet18 --image 64 --rounds 3
    PYTHONPATH=. python benchmarks/monitor_overhead.py --device cuda --batch 64 --image 224

One model, one optimizer (SGD with momentum, or LARS with --lars). Each round trains
``--every`` steps without the monitor and ``--every`` steps with it (one measurement in them:
``every_n_steps=--every``), alternating which goes first, on the same synthetic batch; the
ratio is the median over rounds of (time with / time without), so a shared machine's load
slows both alike; the ratio of the fastest blocks (load only adds time) is printed too. Also
printed: one ``measure()`` alone (median of --rounds calls) and its
share of ``--every`` steps, the cleaner number on a noisy machine, and w_0's memory.
Issue 15's target: ≤ 2% at every_n_steps = 10.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torchvision

from lbconvert.monitor.diffusion import DiffusionMonitor
from lbconvert.optim.lars import LARS


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--image", type=int, default=128)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    ap.add_argument("--lars", action="store_true", help="LARS (adds trust ratios)")
    ap.add_argument("--w0-cpu-bf16", action="store_true", help="keep w_0 on the CPU in bf16")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = getattr(torchvision.models, a.model)(num_classes=100).to(a.device)
    opt = (LARS(model, lr=0.1, momentum=0.9, weight_decay=5e-5) if a.lars
           else torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    x = torch.randn(a.batch, 3, a.image, a.image, device=a.device)
    y = torch.randint(0, 100, (a.batch,), device=a.device)
    kw = {"w0_device": "cpu", "w0_dtype": torch.bfloat16} if a.w0_cpu_bf16 else {}
    mon = DiffusionMonitor(model, opt, every_n_steps=a.every, **kw)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    def block(with_monitor: bool) -> float:
        _sync(a.device)
        t0 = time.perf_counter()
        for i in range(1, a.every + 1):
            step()
            if with_monitor:
                mon.step(i)  # due once, at i = every
        _sync(a.device)
        return time.perf_counter() - t0

    step()  # warm-up (allocations, kernels)
    mon.measure()
    ratios, plain, measures, blocks = [], [], [], {False: [], True: []}
    for r in range(a.rounds):
        order = (False, True) if r % 2 == 0 else (True, False)
        t = {w: block(w) for w in order}
        blocks[False].append(t[False])
        blocks[True].append(t[True])
        ratios.append(t[True] / t[False])
        plain.append(t[False] / a.every)
        _sync(a.device)
        t0 = time.perf_counter()
        mon.measure()
        _sync(a.device)
        measures.append(time.perf_counter() - t0)
    step_s = statistics.median(plain)
    meas_s = statistics.median(measures)
    print(f"{a.model}, batch {a.batch}, {a.image}px, {a.device}, {torch.get_num_threads()} "
          f"threads, {'LARS' if a.lars else 'SGD'}; every_n_steps = {a.every}; {a.rounds} rounds")
    print(mon.describe())
    print(f"{'':34}{'value':>12}")
    print(f"{'step without monitor (median)':34}{step_s * 1e3:>10.1f} ms")
    print(f"{'one measure()':34}{meas_s * 1e3:>10.1f} ms")
    print(f"{'measure() / (every × step)':34}{meas_s / (a.every * step_s):>11.2%}")
    print(f"{'ratio with / without (median)':34}{statistics.median(ratios):>11.4f}")
    print(f"{'ratio of fastest blocks (min/min)':34}"
          f"{min(blocks[True]) / min(blocks[False]):>11.4f}")
    print(f"{'ratios per round':34} " + " ".join(f"{r:.3f}" for r in ratios))


if __name__ == "__main__":
    main()
