"""Fidelity benchmark: does the converted recipe generalize like the original, and does the
smoke verdict predict it? (issue 17; Hoffer et al. 2017, Table 1, in miniature).

For each model/data pair (``benchmarks/fidelity_data.py``: a 1-D conv net on MNIST-1D-like
signals, a 2-D conv net on procedurally generated images; both with BatchNorm, both offline)
and each seed, every arm is trained to the end and scored on a held-out test set:

- ``small``: the original run (batch B_S, SGD + momentum, cosine schedule, E epochs);
- ``naive``: batch B_L = M·B_S, the same LR, epochs and BatchNorm;
- ``recipe``: lbconvert's default plan (``make_plan``), the model rewritten by lbconvert's
  surgery (GhostBatchNorm), lbconvert's ``make_optimizer`` and ``make_scheduler``;
- ``budget``: the same with ``--regime budget`` (same epochs as the original);
- ``keep``: the same with ``--optimizer keep`` (the original SGD at the planned LR);
- ``calibrated``: the default plan with the LR multiplier found by lbconvert's
  ``--calibrate`` (``run_smoke(calibrate=True)``), seeded like the arm;
- ``linear``: the default plan with ``--rule linear`` (LR × M instead of × √M).

Beside each (arm, seed) the smoke test (``run_smoke``) is run on that recipe with the
benchmark's own training data as its data factory; the naive arm's "recipe" is a plan with
rule ``none``, regime ``budget``, optimizer ``keep``, no warmup and no GhostBatchNorm. The
agreement table checks PASS ↔ the arm closes ≥ 90% of the gap and FAIL ↔ it closes < 50%.

Usage (from the repository root)::

    python benchmarks/fidelity.py --quick          # 2 CPU cores, ≤ 15 minutes
    python benchmarks/fidelity.py --full           # a GPU: M = 32, more epochs and seeds

Gap closed = (acc − acc_naive) / (acc_small − acc_naive), from the means over seeds (and per
seed in the agreement table). ‖w_T − w_0‖ is over all trainable parameters.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

ARMS = ("small", "naive", "recipe", "budget", "keep", "calibrated", "linear")
GOOD, BAD = 0.9, 0.5  # gap closed ≥ GOOD should PASS; < BAD should FAIL


def _lb(name: str) -> Any:
    """An lbconvert function by name, from the package layout that exists."""
    where = {
        "make_plan": ("lbconvert.plan.plan", "lbconvert.plan"),
        "TrainConfig": ("lbconvert.config.read", "lbconvert.config"),
        "rewrite": ("lbconvert.rewrite.surgery", "lbconvert.surgery"),
        "make_optimizer": ("lbconvert.optim.factory", "lbconvert.optim"),
        "make_scheduler": ("lbconvert.plan.schedule", "lbconvert.optim.scheduler",
                           "lbconvert.schedule"),
        "lr_multiplier": ("lbconvert.plan.schedule", "lbconvert.schedule"),
        "run_smoke": ("lbconvert.smoke.run", "lbconvert.smoke"),
    }[name]
    errors = []
    for mod in where:
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError) as exc:
            errors.append(f"{mod}: {exc}")
    raise ImportError(f"lbconvert has no {name}: " + "; ".join(errors))


@dataclasses.dataclass
class Pair:
    """One model/data pair and its original small-batch recipe."""

    name: str
    model: str  # class name in fidelity_data
    input_shape: tuple[int, ...]
    lr: float
    epochs: float
    small: int
    large: int
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"


QUICK = {
    "pairs": [
        Pair("signals1d", "Net1d", (1, 40), lr=0.02, epochs=10, small=16, large=128),
        Pair("shapes2d", "Net2d", (1, 16, 16), lr=0.05, epochs=10, small=16, large=128),
    ],
    "seeds": [0, 1, 2],
    "smoke_steps": 200,
    "smoke_time": None,
}
FULL = {
    "pairs": [
        Pair("signals1d", "Net1d", (1, 40), lr=0.02, epochs=20, small=16, large=512),
        Pair("shapes2d", "Net2d", (1, 16, 16), lr=0.05, epochs=20, small=16, large=512),
    ],
    "seeds": [0, 1, 2, 3, 4],
    "smoke_steps": None,  # the smoke test's own default time budget
    "smoke_time": 60.0,
}


def train_config(pair: Pair, n_train: int) -> Any:
    TrainConfig = _lb("TrainConfig")
    return TrainConfig(batch_size=pair.small, lr=pair.lr, epochs=pair.epochs,
                       schedule=pair.schedule, optimizer="sgd", momentum=pair.momentum,
                       weight_decay=pair.weight_decay, dataset_size=n_train)


def arm_plan(pair: Pair, arm: str, n_train: int) -> Any:
    """The lbconvert plan of a large-batch arm (the naive arm: no rule, no regime, keep)."""
    make_plan = _lb("make_plan")
    cfg = train_config(pair, n_train)
    if arm == "naive":
        return make_plan(cfg, pair.large, rule="none", regime="budget", optimizer="keep",
                         warmup="none")
    if arm == "budget":
        return make_plan(cfg, pair.large, regime="budget")
    if arm == "keep":
        return make_plan(cfg, pair.large, optimizer="keep")
    if arm == "linear":
        return make_plan(cfg, pair.large, rule="linear")
    return make_plan(cfg, pair.large)


def distance(model: Any, w0: list) -> float:
    import torch

    with torch.no_grad():
        return math.sqrt(sum(float((p - q).pow(2).sum())
                             for p, q in zip(model.parameters(), w0)))


def train(model: Any, opt: Any, sched: Any, x: Any, y: Any, batch: int, updates: int,
          seed: int) -> Any:
    """``updates`` SGD steps over seeded epoch permutations (a last partial batch is a step)."""
    import torch
    import torch.nn.functional as F

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
            if sched is not None:
                sched.step()
            k += 1
    return True


def evaluate(model: Any, x: Any, y: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def smoke(pair: Pair, original: Any, converted: Any, plan: Any, seed: int, settings: dict,
          calibrate: bool = False) -> Any:
    run_smoke = _lb("run_smoke")
    kwargs: dict[str, Any] = {}
    if settings["smoke_steps"]:
        kwargs["steps"] = settings["smoke_steps"]
    if settings["smoke_time"]:
        kwargs["time_budget"] = settings["smoke_time"]
    if settings.get("smoke_batch"):
        kwargs["smoke_batch"] = settings["smoke_batch"]
    from lbconvert.smoke.options import SmokeOptions

    options = SmokeOptions(data=f"{HERE / 'fidelity_data.py'}:{pair.name}_train", device="cpu",
                           seed=seed, calibrate=calibrate, progress=False, **kwargs)
    return run_smoke(original, converted, plan, options, input_shape=pair.input_shape,
                     num_classes=10)


def run_job(job: tuple[Pair, str, int, dict]) -> dict[str, Any]:
    """Train one (pair, arm, seed) to the end; run the smoke test on its recipe."""
    pair, arm, seed, settings = job
    import torch

    torch.set_num_threads(1)
    import fidelity_data as fd

    t0 = time.perf_counter()
    x, y, xt, yt = fd.dataset(pair.name)
    n = len(x)
    torch.manual_seed(seed)
    original = getattr(fd, pair.model)()
    out: dict[str, Any] = {"pair": pair.name, "arm": arm, "seed": seed}
    plan = None
    if arm == "small":
        model = _copy(original)
        batch, spe = pair.small, math.ceil(n / pair.small)
        updates = int(round(spe * pair.epochs))
        opt, sched = _sgd(model, pair, spe)
    else:
        plan = arm_plan(pair, arm, n)
        if arm == "naive":
            model = _copy(original)
            opt, sched = _sgd(model, pair, plan.steps_per_epoch_new)
            converted = model
        else:
            converted = _lb("rewrite")(original, plan.ghost_batch_size).model
            if arm == "calibrated":
                res = smoke(pair, original, converted, plan, seed, settings, calibrate=True)
                cal = res.calibration
                out["calibration"] = cal.multiplier
                plan = dataclasses.replace(plan, lr_new=plan.lr_new * cal.multiplier)
            model = _copy(converted)
            opt = _lb("make_optimizer")(model, plan)
            sched = _lb("make_scheduler")(opt, plan, plan.steps_per_epoch_new)
        batch, updates = plan.target_batch, plan.updates_new
        out.update(lr=plan.lr_new, ghost=plan.ghost_batch_size, optimizer=plan.optimizer_new,
                   epochs=plan.epochs_new, warmup_epochs=plan.warmup_epochs)
        res = smoke(pair, original, converted, plan, seed, settings)
        v = res.verdict
        out["verdict"] = v.level
        out["smoke"] = {k: getattr(v, k, None) for k in
                        ("slope_ratio", "final_gap", "naive_final_gap", "horizon",
                         "curve_gap", "curve_bias", "naive_gap", "reason")}
        out["smoke"]["steps"] = min(a.steps for a in res.arms.values())
        out["smoke_seconds"] = res.timings.get("total")
    w0 = [p.detach().clone() for p in model.parameters()]
    ok = train(model, opt, sched, x, y, batch, updates, seed)
    out.update(acc=evaluate(model, xt, yt) if ok else float("nan"),
               train_acc=evaluate(model, x, y) if ok else float("nan"),
               distance=distance(model, w0), updates=updates, batch=batch, diverged=not ok,
               seconds=time.perf_counter() - t0)
    return out


def _copy(model: Any) -> Any:
    import copy

    return copy.deepcopy(model)


def _sgd(model: Any, pair: Pair, spe: int) -> tuple[Any, Any]:
    """The original optimizer and its cosine schedule over E epochs of ``spe`` updates."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=pair.lr, momentum=pair.momentum,
                          weight_decay=pair.weight_decay)
    total = spe * pair.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k / total, 1.0))))
    return opt, sched


# ---------------------------------------------------------------------------- tables


def _ms(vals: list[float]) -> tuple[float, float]:
    vals = [v for v in vals if math.isfinite(v)]
    if not vals:
        return float("nan"), float("nan")
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def gap_closed(acc: float, small: float, naive: float) -> float:
    den = small - naive
    return (acc - naive) / den if den else float("nan")


def expected(closed: float) -> str:
    if not math.isfinite(closed):
        return "FAIL"
    return "PASS" if closed >= GOOD else ("FAIL" if closed < BAD else "either")


def tables(rows: list[dict[str, Any]], pairs: list[Pair], seeds: list[int]) -> str:
    out = []
    by = {(r["pair"], r["arm"], r["seed"]): r for r in rows}
    agree_n = agree_k = 0
    for pair in pairs:
        out.append(f"\n### {pair.name}: batch {pair.small} → {pair.large} "
                   f"(M = {pair.large // pair.small}), {pair.epochs:g} epochs at B_S, "
                   f"{len(seeds)} seeds\n")
        out.append("| arm | updates | held-out acc (mean ± sd) | gap closed | ‖w_T − w_0‖ "
                   "| smoke verdicts (by seed) |")
        out.append("|---|---:|---:|---:|---:|---|")
        mean = {}
        for arm in ARMS:
            rs = [by[(pair.name, arm, s)] for s in seeds if (pair.name, arm, s) in by]
            if rs:
                mean[arm] = _ms([r["acc"] for r in rs])[0]
        for arm in ARMS:
            rs = [by[(pair.name, arm, s)] for s in seeds if (pair.name, arm, s) in by]
            if not rs:
                continue
            m, sd = _ms([r["acc"] for r in rs])
            dm, dsd = _ms([r["distance"] for r in rs])
            closed = gap_closed(m, mean.get("small", float("nan")), mean.get("naive", float("nan")))
            verdicts = " ".join(r.get("verdict", "—") for r in rs)
            extra = ""
            if arm == "calibrated":
                cm, csd = _ms([r.get("calibration", float("nan")) for r in rs])
                extra = f" (×{cm:.2f} ± {csd:.2f} the plan's LR)"
            out.append(f"| {arm}{extra} | {rs[0]['updates']} | {100 * m:.2f} ± {100 * sd:.2f}% "
                       f"| {100 * closed:.0f}% | {dm:.2f} ± {dsd:.2f} | {verdicts} |")
    out.append("\n### Smoke verdict against the final accuracy, per (pair, arm, seed)\n")
    out.append("| pair | arm | seed | held-out acc | gap closed | expected | verdict | slope ratio "
               "| final ln(d_conv/d_orig) | updates conv / orig | agrees |")
    out.append("|---|---|---:|---:|---:|---|---|---:|---:|---:|---|")
    for pair in pairs:
        for arm in ARMS[1:]:
            for s in seeds:
                r = by.get((pair.name, arm, s))
                sm, nv = by.get((pair.name, "small", s)), by.get((pair.name, "naive", s))
                if r is None or sm is None or nv is None or "verdict" not in r:
                    continue
                closed = gap_closed(r["acc"], sm["acc"], nv["acc"])
                exp = expected(closed)
                v = r["verdict"]
                if exp == "either":
                    agree = "—"
                else:
                    ok = v == exp
                    agree_n += 1
                    agree_k += ok
                    agree = "yes" if ok else "**no**"
                sr = r["smoke"].get("slope_ratio")
                final = r["smoke"].get("final_gap")
                h = r["smoke"].get("horizon") or {}
                upd = f"{h['converted']} / {h['original']}" if h else "—"
                out.append(f"| {pair.name} | {arm} | {s} | {100 * r['acc']:.2f}% "
                           f"| {100 * closed:.0f}% | {exp} | {v} "
                           f"| {_f(sr)} | {_f(final)} | {upd} | {agree} |")
    pct = 100 * agree_k / agree_n if agree_n else float("nan")
    out.append(f"\nAgreement (PASS ↔ closes ≥ {GOOD:.0%}, FAIL ↔ closes < {BAD:.0%}; cases "
               f"between are not counted): {agree_k}/{agree_n} = {pct:.0f}%")
    return "\n".join(out)


def _f(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="2 CPU cores, ≤ 15 min (default)")
    mode.add_argument("--full", action="store_true", help="larger M, epochs and seeds (GPU)")
    ap.add_argument("--pairs", default=None, help="comma-separated pair names")
    ap.add_argument("--arms", default=None, help="comma-separated arms (small and naive are "
                    "always run: gap closed needs them)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds")
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (held-out runs)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    ap.add_argument("--smoke-batch", type=int, default=None,
                    help="the smoke test's proxy small batch (its --smoke-batch); e.g. the "
                    "original batch, so a CPU runs the real pair instead of the CPU proxy")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    settings = dict(FULL if args.full else QUICK)
    settings["smoke_batch"] = args.smoke_batch
    pairs = settings.pop("pairs")
    seeds = settings.pop("seeds")
    if args.pairs:
        pairs = [p for p in pairs if p.name in args.pairs.split(",")]
    if args.seeds or args.seed_start:
        seeds = list(range(args.seed_start, args.seed_start + (args.seeds or len(seeds))))
    arms = list(ARMS) if not args.arms else \
        ["small", "naive", *[a for a in args.arms.split(",") if a not in ("small", "naive")]]
    cost = {"small": 1, "naive": 1, "budget": 1.5, "recipe": 8, "keep": 8, "calibrated": 12,
            "linear": 8}
    jobs = sorted(((p, a, s, settings) for p in pairs for a in arms for s in seeds),
                  key=lambda j: -cost.get(j[1], 1) * (3 if j[0].name == "shapes2d" else 1))
    t0 = time.perf_counter()
    rows = []
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with ctx.Pool(max(1, args.jobs)) as pool:
        for r in pool.imap_unordered(run_job, jobs):
            rows.append(r)
            print(f"[{time.perf_counter() - t0:6.0f}s] {r['pair']} {r['arm']} seed {r['seed']}: "
                  f"acc {100 * r['acc']:.2f}% verdict {r.get('verdict', '—')} "
                  f"({r['seconds']:.0f}s)", file=sys.stderr, flush=True)
    cmd = "python benchmarks/fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# lbconvert fidelity benchmark\n\nCommand: `{cmd.strip()}` — "
          f"{time.perf_counter() - t0:.0f} s wall, {args.jobs} worker(s), "
          f"{os.cpu_count()} CPU(s); smoke test per arm: "
          + (f"{settings['smoke_steps']} updates per smoke arm" if settings["smoke_steps"]
             else f"default budget {settings['smoke_time']:g} s")
          + (f", proxy small batch {args.smoke_batch}" if args.smoke_batch else ""))
    print(tables(rows, pairs, seeds))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
