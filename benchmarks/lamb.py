"""Time ``step()`` of lbconvert LAMB against ``torch.optim.AdamW(foreach=True)``.

    python benchmarks/lamb.py [--device cpu|cuda] [--rounds N] [--steps K] [--threads T]

ViT-tiny parameter set (timm ``vit_tiny_patch16_224``, no weights: 152 tensors, 5.7 M values)
with random gradients. Both optimizers step the same tensors in the same process; each round
runs ``--steps`` steps of each arm in turn (the order alternates between rounds), so machine
load hits both arms alike; the table gives the median ms per step over rounds, p10/p90, and the
ratio of medians to AdamW foreach.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from lbconvert.optim.lamb import LAMB  # noqa: E402


def vit_tiny_named_params(device):
    """``(name, tensor)`` of ViT-tiny with random gradients (the architecture only)."""
    import timm

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False).to(device)
    named = list(model.named_parameters())
    for _, p in named:
        p.grad = torch.randn_like(p) * 1e-3
    return model, named


def bench(device: str, rounds: int, steps: int) -> None:
    model, named = vit_tiny_named_params(device)
    params = [p for _, p in named]
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    arms = {
        "AdamW foreach": torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, foreach=True),
        "lbconvert LAMB (default exclusions)": LAMB(model, lr=1e-3, weight_decay=0.05),
        "lbconvert LAMB (adapt all)": LAMB(params, lr=1e-3, weight_decay=0.05,
                                          exclude_adapt=False, exclude_decay=False),
    }
    if device == "cuda":
        arms["AdamW fused"] = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05, fused=True)
    n = sum(p.numel() for p in params)
    print(f"ViT-tiny parameters: {len(params)} tensors, {n / 1e6:.2f} M values, device={device}"
          f" ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}), torch"
          f" {torch.__version__}, threads {torch.get_num_threads()}; median of {rounds}"
          f" interleaved rounds of {steps} steps")
    for opt in arms.values():  # warm-up: state allocation, first-call overheads
        for _ in range(3):
            opt.step()
    times: dict[str, list[float]] = {name: [] for name in arms}
    names = list(arms)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                arms[name].step()
            sync()
            times[name].append((time.perf_counter() - t0) * 1e3 / steps)
    ref = statistics.median(times["AdamW foreach"])
    print(f"| {'optimizer':<36} | median ms | p10 ms | p90 ms | × AdamW foreach |")
    print(f"|{'-' * 38}|----------:|-------:|-------:|----------------:|")
    for name, ts in times.items():
        ts.sort()
        med = statistics.median(ts)
        print(f"| {name:<36} | {med:9.3f} | {ts[len(ts) // 10]:6.3f} |"
              f" {ts[(9 * len(ts)) // 10]:6.3f} | {med / ref:15.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (torch.set_num_threads); 1 is steadier on a shared machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench(args.device, args.rounds, args.steps)


if __name__ == "__main__":
    main()
