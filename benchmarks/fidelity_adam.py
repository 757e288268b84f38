"""A BatchNorm-free pair trained with AdamW: does lbconvert's Adam-family recipe close the
small-vs-large-batch generalization gap? (issue 26)

    python benchmarks/fidelity_adam.py [--seeds 0 1 2] [--epochs 20] [--m 8] [--out FILE]

Task: ``signals1d`` from ``benchmarks/fidelity_data.py`` (procedural, nothing downloaded:
2,048 training and 4,096 held-out 40-point signals, 10 classes). Model: a tiny pre-norm
transformer (``TinyTransformer``: 10 tokens of 4 points, width 32, 2 layers, 4 heads,
LayerNorm only — no BatchNorm). The original run: AdamW (lr 2e-3, β (0.9, 0.999), ε 1e-8,
weight decay 0.05), batch 32, ``--epochs`` epochs, cosine decay.

Arms, each trained to its end and scored on the held-out split:

- ``small``: the original run.
- ``naive``: batch 32·M, the same LR, epochs and optimizer.
- ``lamb``: lbconvert's default plan for an Adam-family run (``--optimizer auto`` → LAMB,
  You et al. 2020; LR × √M, epochs × M, warmup).
- ``keep``: ``--optimizer keep``, AdamW with the SDE scaling rule (Malladi et al. 2022: LR ×
  √M, 1 − β × M, ε ÷ √M; a β the rule would take to ≤ 0 is kept), epochs × M, warmup.
- ``budget``: the default plan with ``--regime budget`` (the original epochs).

Every large-batch arm's optimizer, schedule and LR come from ``make_plan`` →
``make_optimizer`` → ``make_scheduler``, as the converted run's would. Gap closed =
(acc − naive) / (small − naive), per arm over the mean of the seeds.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

import fidelity_data as fd  # noqa: E402

from lbconvert.config.fields import TrainConfig  # noqa: E402
from lbconvert.optim.factory import make_optimizer  # noqa: E402
from lbconvert.optim.scheduler import make_scheduler  # noqa: E402
from lbconvert.plan.plan import make_plan  # noqa: E402

SMALL = 32
LR = 2e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
WD = 0.05
ARMS = ("small", "naive", "lamb", "keep", "budget")


class TinyTransformer(nn.Module):
    """Pre-norm transformer on a (N, 1, 40) signal: 10 tokens of 4 points; no BatchNorm."""

    def __init__(self, length: int = 40, patch: int = 4, width: int = 32, depth: int = 2,
                 heads: int = 4, classes: int = fd.CLASSES):
        super().__init__()
        self.patch = patch
        self.embed = nn.Linear(patch, width)
        self.pos = nn.Parameter(torch.zeros(1, length // patch, width))
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x.view(x.shape[0], -1, self.patch)) + self.pos
        return self.head(self.norm(self.blocks(tokens)).mean(1))


def train_config(n_train: int, epochs: float) -> TrainConfig:
    return TrainConfig(batch_size=SMALL, lr=LR, epochs=epochs, schedule="cosine",
                       optimizer="adamw", betas=BETAS, eps=EPS, weight_decay=WD,
                       dataset_size=n_train, num_classes=fd.CLASSES)


def _adamw_cosine(model: nn.Module, updates: int):
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WD)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k / updates, 1.0))))
    return opt, sched


def train(model, opt, sched, x, y, batch: int, updates: int, seed: int) -> bool:
    """``updates`` steps over seeded epoch permutations (a last partial batch is a step)."""
    g = torch.Generator().manual_seed(seed + 99991)
    k = 0
    model.train()
    while k < updates:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch):
            if k >= updates:
                break
            idx = perm[i:i + batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                return False
            loss.backward()
            opt.step()
            sched.step()
            k += 1
    return True


def evaluate(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def run(arm: str, seed: int, epochs: float, m: int) -> dict:
    torch.set_num_threads(1)
    x, y, xt, yt = fd.dataset("signals1d")
    n = len(x)
    torch.manual_seed(seed)
    model = TinyTransformer()
    cfg = train_config(n, epochs)
    t0 = time.perf_counter()
    out = {"arm": arm, "seed": seed}
    if arm in ("small", "naive"):
        batch = SMALL if arm == "small" else SMALL * m
        updates = math.ceil(n / batch) * int(epochs)
        opt, sched = _adamw_cosine(model, updates)
        out.update(optimizer="adamw", lr=LR)
    else:
        plan = make_plan(cfg, SMALL * m, optimizer="keep" if arm == "keep" else "auto",
                         regime="budget" if arm == "budget" else "adapt")
        opt = make_optimizer(model, plan)
        sched = make_scheduler(opt, plan, plan.steps_per_epoch_new)
        batch, updates = plan.target_batch, plan.updates_new
        out.update(optimizer=plan.optimizer_new, lr=plan.lr_new, betas=plan.betas,
                   eps=plan.eps, warmup_epochs=plan.warmup_epochs)
    ok = train(model, opt, sched, x, y, batch, updates, seed)
    out.update(acc=evaluate(model, xt, yt) if ok else float("nan"), updates=updates,
               batch=batch, diverged=not ok, seconds=time.perf_counter() - t0)
    return out


def table(rows: list[dict], seeds: list[int]) -> str:
    by = {(r["arm"], r["seed"]): r for r in rows}

    def mean(arm):
        vals = [by[(arm, s)]["acc"] for s in seeds if (arm, s) in by]
        vals = [v for v in vals if math.isfinite(v)]
        return (statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0,
                len(vals))

    small, naive = mean("small")[0], mean("naive")[0]
    lines = ["| arm | optimizer | batch | updates | LR | held-out acc (mean ± sd, n) |"
             " gap closed |", "|---|---|--:|--:|--:|--:|--:|"]
    for arm in ARMS:
        r = by.get((arm, seeds[0]))
        if r is None:
            continue
        mu, sd, k = mean(arm)
        closed = (mu - naive) / (small - naive) if small != naive else float("nan")
        opt = r["optimizer"] + (f" β ({r['betas'][0]:.3g}, {r['betas'][1]:.4g}) ε {r['eps']:.3g}"
                                if r.get("betas") else "")
        lines.append(f"| {arm} | {opt} | {r['batch']} | {r['updates']} | {r['lr']:.3g} | "
                     f"{mu:.4f} ± {sd:.4f} ({k}) | {closed:.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=float, default=20)
    ap.add_argument("--m", type=int, default=8, help="batch ratio M (large = 32·M)")
    ap.add_argument("--arms", nargs="+", default=list(ARMS))
    ap.add_argument("--out", default=None, help="also write the table (Markdown) here")
    args = ap.parse_args(argv)
    rows = []
    for seed in args.seeds:
        for arm in args.arms:
            r = run(arm, seed, args.epochs, args.m)
            rows.append(r)
            print(f"{arm:>7} seed {seed}: acc {r['acc']:.4f}, {r['updates']} updates at batch "
                  f"{r['batch']}, {r['seconds']:.0f} s", flush=True)
    text = table(rows, args.seeds)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
