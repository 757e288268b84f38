"""Reproduce the diffusion claim of Hoffer et al. 2017 at small scale on CPU.

A small BN CNN on structured synthetic 1×8×8 images (``make_data`` below: 10 classes, a
faint class template under unit noise and 10% flipped labels, so training does not reach zero
loss in a few hundred updates; sklearn's digits is not installed in the venv),
B_S = 16 against B_L = 512 (M = 32), a fixed
number of updates per arm, through ``lbconvert.smoke.run.run_smoke`` with two converted arms:

- ``hoffer``: GhostBatchNorm (ghost = B_S) + the original SGD at LR × √M (``--optimizer keep``);
- ``lars``:   GhostBatchNorm + LARS (γ = LR × √M, η = 0.001), the plan's default.

Expected from the paper: the naive large batch (same LR) diffuses more slowly than the
original; √M LR with GBN restores the distance curve. Prints slopes with 95% bootstrap CIs
over two windows, distance ratios at several t, and the time taken. Run::

    .venv/bin/python benchmarks/diffusion.py [--steps 1000] [--seeds 0 1] [--threads 1]

Timings on a shared CPU are noisy: report them as measured.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from lbconvert.config.read import TrainConfig
from lbconvert.plan.plan import make_plan
from lbconvert.rewrite.surgery import rewrite
from lbconvert.smoke.fit import fit_log_slope
from lbconvert.smoke.options import SmokeOptions
from lbconvert.smoke.run import run_smoke


class SmallCNN(nn.Module):
    """conv-BN-ReLU ×2, pool, linear: the digits-sized network of the issue's measurement."""

    def __init__(self, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return self.fc(x.mean((2, 3)))


def make_data(n: int = 4096, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """Digits-sized data with signal and noise: x = 0.35·template[y] + N(0, 1), 10% flipped."""
    gen = torch.Generator().manual_seed(seed)
    templates = torch.randn((10, 1, 8, 8), generator=gen)
    y = torch.randint(0, 10, (n,), generator=gen)
    x = 0.35 * templates[y] + torch.randn((n, 1, 8, 8), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.1
    y = torch.where(flip, torch.randint(0, 10, (n,), generator=gen), y)
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(
        batch_size=16,
        lr=0.1,
        epochs=10,
        schedule="constant",
        optimizer="sgd",
        momentum=0.9,
        weight_decay=1e-4,
        dataset_size=4096,
    )
    windows = [(10, args.steps), (100, args.steps)]
    at = sorted({t for t in (10, 100, 200, 1000, args.steps) if t <= args.steps})
    print(
        "SmallCNN, make_data 1×8×8 (faint templates, 10% label noise), B_S 16 vs B_L 512 "
        f"(M 32), {args.steps} updates, "
        f"seeds {args.seeds}, {args.threads} thread(s), device cpu"
    )
    rows = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = SmallCNN()
        for variant, optimizer in (("hoffer", "keep"), ("lars", "lars")):
            plan = make_plan(cfg, 512, ghost_batch=16, optimizer=optimizer, warmup="none")
            conv = rewrite(model, plan.ghost_batch_size).model
            t0 = time.perf_counter()
            res = run_smoke(
                model,
                conv,
                plan,
                SmokeOptions(
                    data=f"{__file__}:make_data",
                    device="cpu",
                    smoke_batch=16,
                    steps=args.steps,
                    seed=seed,
                    progress=False,
                ),
                input_shape=(1, 8, 8),
                num_classes=10,
            )
            seconds = time.perf_counter() - t0
            for name, arm in res.arms.items():
                if name != "converted" and variant == "lars":
                    continue  # the same original / naive arms as in the hoffer run
                label = f"{variant} (GBN, {arm.optimizer})" if name == "converted" else name
                ts, ds = [m.t for m in arm.marks], [m.distance for m in arm.marks]
                fits = [fit_log_slope(ts, ds, w, seed=seed) for w in windows]
                ratios = [arm.distance_at(t) / res.arms["original"].distance_at(t) for t in at]
                rows.append((seed, label, arm.lr, fits, ratios, arm.marks[-1].loss))
            print(
                f"  seed {seed} {variant}: {seconds:.1f}s (arm step times "
                + ", ".join(f"{n} {a.step_time * 1e3:.1f} ms" for n, a in res.arms.items())
                + f"); verdict {res.verdict.level}: {res.verdict.reason}"
            )
    head = "".join(f"  slope [{w[0]},{w[1]}] (95% CI)     " for w in windows)
    print(
        f"\n{'seed':>4} {'arm':<40} {'LR':>6} {head}"
        + "".join(f" d/d_orig@{t:<5}" for t in at)
        + "  loss(end)"
    )
    for seed, label, lr, fits, ratios, loss in rows:
        cells = "".join(f"  {f.slope:6.3f} [{f.ci_low:6.3f}, {f.ci_high:6.3f}]      " for f in fits)
        print(
            f"{seed:>4} {label:<40} {lr:6.3f} {cells}"
            + "".join(f" {r:13.3f}" for r in ratios)
            + f"  {loss:8.3f}"
        )


if __name__ == "__main__":
    main()
