"""Fidelity benchmark: does the converted recipe generalize like the original, and does the
smoke verdict predict it? (issue 17; Hoffer et al. 2017, Table 1, in miniature).

For each model/data pair (``benchmarks/fidelity_data.py``, all offline: a 1-D conv net on
MNIST-1D-like signals and a 2-D conv net on procedural images, the pairs the verdict's
thresholds were chosen on; and, held out from them (issue 23), a residual net with 9
BatchNorm layers on a 24-class, 16k-sample image task and a BatchNorm1d MLP on tabular-like
rows, the latter also held out from the ghost default) and each seed, every arm is trained to
the end and scored on a held-out test set:

- ``small``: the original run (batch B_S, SGD + momentum, cosine schedule, E epochs);
- ``naive``: batch B_L = M·B_S, the same LR, epochs and BatchNorm;
- ``recipe``: lbconvert's default plan (``make_plan``), the model rewritten by lbconvert's
  surgery (GhostBatchNorm), lbconvert's ``make_optimizer`` and ``make_scheduler``;
- ``budget``: the same with ``--regime budget`` (same epochs as the original);
- ``keep``: the same with ``--optimizer keep`` (the original SGD at the planned LR);
- ``calibrated``: the default plan with the LR multiplier found by lbconvert's
  ``--calibrate`` (``run_smoke(calibrate=True)``), seeded like the arm;
- ``linear``: the default plan with ``--rule linear`` (LR × M instead of × √M).

- ``ghostG``: the default plan at ghost batch G (the ghost-size curve: 2, 4, 8, 16, 32 and
  the original batch; trained, not smoke-tested).

Beside each (arm, seed) the smoke test (``run_smoke``) is run on that recipe with the
benchmark's own training data as its data factory, twice: at the real batch pair with a fixed
number of updates, and on the CLI's CPU path (the default CPU proxy batches, the update count
a default 60 s time-sized run made on the pair, the verdict's extrapolation); the naive arm's
"recipe" is a plan with rule ``none``, regime ``budget``, optimizer ``keep``, no warmup and
no GhostBatchNorm. The agreement table (``fidelity_count.py``) checks PASS ↔ the arm closes
≥ 90% of the gap and FAIL ↔ it closes < 50%, without the rows that cannot disagree.

Usage (from the repository root)::

    python benchmarks/fidelity.py --quick          # <= 15 min on 2 CPU cores (docs/fidelity.md)
    python benchmarks/fidelity.py --cpu --pairs signals1d   # the published CPU tables, in parts
    python benchmarks/fidelity.py --full           # a GPU: M up to 128, more epochs, seeds
    python benchmarks/fidelity.py --render a.json b.json   # tables from saved runs

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
    classes: int = 10
    seeds: int | None = None  # fewer seeds than the mode's (an expensive pair)
    skip: tuple[str, ...] = ()  # arms not run on this pair (cost)
    ghost_seeds: int = 2  # seeds of the ghost-size curve

    @property
    def label(self) -> str:
        """The row key: the data name, with M when it is not 8."""
        m = self.large // self.small
        return self.name if m == 8 else f"{self.name} M={m}"


QUICK = {
    # <= 15 minutes on 2 CPU cores (docs/fidelity.md has the measured time): one seed of a
    # threshold pair, the held-out tabular pair and the M = 32 collapse, the CLI path measured
    # as a user's default run makes it; no ghost-size curves, no duplicate calibrated arm.
    "pairs": [
        Pair("signals1d", "Net1d", (1, 40), lr=0.02, epochs=10, small=16, large=128,
             skip=("calibrated",), ghost_seeds=0),
        Pair("tabular", "MLP", (32,), lr=0.02, epochs=3, small=32, large=256, classes=12,
             skip=("calibrated",), ghost_seeds=0),
        Pair("signals1d", "Net1d", (1, 40), lr=0.02, epochs=20, small=16, large=512,
             skip=("keep", "calibrated", "budget"), ghost_seeds=0),
    ],
    "seeds": [0],
    "smoke_steps": 200,
    "smoke_time": None,
}
CPU = {
    "pairs": [
        Pair("signals1d", "Net1d", (1, 40), lr=0.02, epochs=10, small=16, large=128),
        Pair("shapes2d", "Net2d", (1, 16, 16), lr=0.05, epochs=10, small=16, large=128),
        Pair("glyphs2d", "ResNet2d", (1, 16, 16), lr=0.05, epochs=2, small=16, large=128,
             classes=24, seeds=2, skip=("keep", "calibrated", "linear"), ghost_seeds=1),
        # M = 32 and the linear rule's collapse (issue 23 item 5): does the smoke loss see it?
        Pair("signals1d", "Net1d", (1, 40), lr=0.02, epochs=20, small=16, large=512, seeds=2,
             skip=("keep", "calibrated", "budget"), ghost_seeds=0),
        Pair("tabular", "MLP", (32,), lr=0.02, epochs=3, small=32, large=256, classes=12),
        Pair("tabular", "MLP", (32,), lr=0.02, epochs=3, small=32, large=1024, classes=12,
             ghost_seeds=0),
        # M = 128 where the CPU allows: the recipe's regime is 128x the original's compute.
        Pair("tabular", "MLP", (32,), lr=0.02, epochs=3, small=32, large=4096, classes=12,
             seeds=2, skip=("calibrated",), ghost_seeds=0),
        Pair("signals1d", "Net1d", (1, 40), lr=0.02, epochs=10, small=16, large=2048, seeds=1,
             skip=("keep", "calibrated"), ghost_seeds=0),
    ],
    "seeds": [0, 1, 2],
    "smoke_steps": 200,
    "smoke_time": None,
}
FULL = {
    "pairs": [
        Pair("signals1d", "Net1d", (1, 40), lr=0.02, epochs=20, small=16, large=512),
        Pair("shapes2d", "Net2d", (1, 16, 16), lr=0.05, epochs=20, small=16, large=512),
        Pair("glyphs2d", "ResNet2d", (1, 16, 16), lr=0.05, epochs=4, small=16, large=128,
             classes=24),
        Pair("glyphs2d", "ResNet2d", (1, 16, 16), lr=0.05, epochs=4, small=16, large=512,
             classes=24),
        Pair("tabular", "MLP", (32,), lr=0.02, epochs=3, small=32, large=256, classes=12),
        Pair("tabular", "MLP", (32,), lr=0.02, epochs=3, small=32, large=1024, classes=12),
        Pair("tabular", "MLP", (32,), lr=0.02, epochs=3, small=32, large=4096, classes=12),
    ],
    "seeds": [0, 1, 2, 3, 4],
    "smoke_steps": None,  # the smoke test's own default time budget
    "smoke_time": 60.0,
}


def train_config(pair: Pair, n_train: int) -> Any:
    TrainConfig = _lb("TrainConfig")
    return TrainConfig(batch_size=pair.small, lr=pair.lr, epochs=pair.epochs,
                       schedule=pair.schedule, optimizer="sgd", momentum=pair.momentum,
                       weight_decay=pair.weight_decay, dataset_size=n_train,
                       num_classes=pair.classes)


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
    if arm.startswith("ghost"):  # the default plan at another ghost size (the curve)
        return make_plan(cfg, pair.large, ghost_batch=int(arm[5:]))
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
          calibrate: bool = False, path: str = "real") -> Any:
    """``run_smoke`` on this recipe with the pair's training data. ``path="real"``: the
    benchmark's settings (the real batch pair by default, a fixed number of updates);
    ``"cli"``: what a CPU user gets from ``lbconvert MODEL`` — the default CPU proxy
    batches, and the update count a default time-sized run made on this pair
    (``settings["cli_steps"]``, measured by :func:`measure_cli`), extrapolated by the verdict
    to the real runs' ends."""
    run_smoke = _lb("run_smoke")
    kwargs: dict[str, Any] = {}
    if path == "cli":
        kwargs["steps"] = settings["cli_steps"][pair.label]
        kwargs["noise_scale"] = False  # measured beside the verdict, never part of it
    else:
        if settings["smoke_steps"]:
            kwargs["steps"] = settings["smoke_steps"]
        if settings["smoke_time"]:
            kwargs["time_budget"] = settings["smoke_time"]
        # the real batch pair unless told otherwise (the CPU proxy is the "cli" path)
        kwargs["smoke_batch"] = settings.get("smoke_batch") or pair.small
    from lbconvert.smoke.options import SmokeOptions

    device = "cpu" if path == "cli" else settings.get("device", "cpu")
    options = SmokeOptions(data=f"{HERE / 'fidelity_data.py'}:{pair.name}_train", device=device,
                           seed=seed, calibrate=calibrate, progress=False, **kwargs)
    return run_smoke(original, converted, plan, options, input_shape=pair.input_shape,
                     num_classes=pair.classes)


def smoke_summary(res: Any, classes: int) -> dict[str, Any]:
    """The verdict's numbers, the update counts and proxy batches, and each arm's training
    loss at its first and last mark (issue 23 item 5: does the smoke run's loss see a
    collapse?) beside chance, ln(classes)."""
    v = res.verdict
    out = {k: getattr(v, k, None) for k in
           ("slope_ratio", "final_gap", "naive_final_gap", "horizon",
            "curve_gap", "curve_bias", "naive_gap", "reason")}
    out["level"] = v.level
    out["steps"] = min(a.steps for a in res.arms.values())
    out["arm_steps"] = {n: a.steps for n, a in res.arms.items()}
    out["proxy"] = [res.proxy.get("small_batch"), res.proxy.get("large_batch")] \
        if isinstance(res.proxy, dict) else None
    out["loss"] = {n: [a.marks[0].loss, a.marks[-1].loss] if a.marks else None
                   for n, a in res.arms.items()}
    out["chance_loss"] = math.log(classes)
    out["seconds"] = res.timings.get("total")
    return out


def measure_cli(job: tuple[Pair, dict]) -> tuple[str, dict[str, Any]]:
    """One default CLI smoke run on the pair's recipe (seed 0): the CPU proxy, the default
    60 s budget, noise scale on — what ``lbconvert MODEL --data ...`` runs. Its update count
    sizes the ``cli`` smoke rows of every arm and seed (the time-sized runs themselves would
    cost 60 s each and depend on the machine's load)."""
    pair, settings = job
    import torch

    torch.set_num_threads(1)
    import fidelity_data as fd

    from lbconvert.smoke.options import SmokeOptions

    x, _, _, _ = fd.dataset(pair.name)
    torch.manual_seed(0)
    original = getattr(fd, pair.model)()
    plan = arm_plan(pair, "recipe", len(x))
    converted = _lb("rewrite")(original, plan.ghost_batch_size).model
    options = SmokeOptions(data=f"{HERE / 'fidelity_data.py'}:{pair.name}_train", device="cpu",
                           seed=0, progress=False)
    res = _lb("run_smoke")(original, converted, plan, options, input_shape=pair.input_shape,
                           num_classes=pair.classes)
    return pair.label, smoke_summary(res, pair.classes)


def run_job(job: tuple[Pair, str, int, dict]) -> dict[str, Any]:
    """Train one (pair, arm, seed) to the end; run the smoke test on its recipe, at the
    benchmark's settings and on the CLI's CPU path."""
    pair, arm, seed, settings = job
    import torch

    torch.set_num_threads(1)
    import fidelity_data as fd

    t0 = time.perf_counter()
    x, y, xt, yt = fd.dataset(pair.name)
    n = len(x)
    torch.manual_seed(seed)
    original = getattr(fd, pair.model)()
    out: dict[str, Any] = {"pair": pair.label, "arm": arm, "seed": seed}
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
        if not arm.startswith("ghost"):  # the curve's points are trained, not smoke-tested
            res = smoke(pair, original, converted, plan, seed, settings)
            out["verdict"] = res.verdict.level
            out["smoke"] = smoke_summary(res, pair.classes)
            out["smoke_seconds"] = res.timings.get("total")
            if settings.get("cli_steps"):
                res = smoke(pair, original, converted, plan, seed, settings, path="cli")
                out["cli_verdict"] = res.verdict.level
                out["cli_smoke"] = smoke_summary(res, pair.classes)
    # Module.to moves parameters in place, so the optimizer built above keeps them.
    dev = settings.get("device", "cpu")
    model.to(dev)
    x, y, xt, yt = (t.to(dev) for t in (x, y, xt, yt))
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
    """Per pair: each arm's held-out accuracy, gap closed and distance, and its verdicts."""
    out = []
    by = {(r["pair"], r["arm"], r["seed"]): r for r in rows}
    for pair in pairs:
        ran = sorted({r["seed"] for r in rows if r["pair"] == pair.label})
        out.append(f"\n### {pair.label}: batch {pair.small} → {pair.large} "
                   f"(M = {pair.large // pair.small}), {pair.epochs:g} epochs at B_S, "
                   f"seeds {', '.join(map(str, ran))}\n")
        out.append("| arm | ghost | updates | held-out acc (mean ± sd) | gap closed "
                   "| ‖w_T − w_0‖ | smoke verdicts (by seed) |")
        out.append("|---|---:|---:|---:|---:|---:|---|")
        mean = {}
        for arm in ARMS:
            rs = [by[(pair.label, arm, s)] for s in seeds if (pair.label, arm, s) in by]
            if rs:
                mean[arm] = _ms([r["acc"] for r in rs])[0]
        ghosts = sorted({r["arm"] for r in rows if r["pair"] == pair.label
                         and r["arm"].startswith("ghost")}, key=lambda a: int(a[5:]))
        for arm in (*ARMS, *ghosts):
            rs = [by[(pair.label, arm, s)] for s in seeds if (pair.label, arm, s) in by]
            if not rs:
                continue
            m, sd = _ms([r["acc"] for r in rs])
            dm, dsd = _ms([r["distance"] for r in rs])
            closed = gap_closed(m, mean.get("small", float("nan")), mean.get("naive", float("nan")))
            verdicts = " ".join(r.get("verdict", "—") for r in rs)
            if any("cli_verdict" in r for r in rs):
                verdicts += " (CLI path: " + " ".join(r.get("cli_verdict", "—") for r in rs) + ")"
            extra = ""
            if arm == "calibrated":
                cm, csd = _ms([r.get("calibration", float("nan")) for r in rs])
                extra = f" (×{cm:.2f} ± {csd:.2f} the plan's LR)"
            ghost = rs[0].get('ghost', '—') if arm != 'naive' else '—'
            out.append(f"| {arm}{extra} | {ghost} | {rs[0]['updates']} "
                       f"| {100 * m:.2f} ± {100 * sd:.2f}% "
                       f"| {100 * closed:.0f}% | {dm:.2f} ± {dsd:.2f} | {verdicts} |")
    return "\n".join(out)


def _f(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}"


GHOSTS = (2, 4, 8, 16, 32)


def jobs_for(pairs: list[Pair], arms: list[str], seeds: list[int], settings: dict,
             ghost: bool) -> list[tuple[Pair, str, int, dict]]:
    """Every (pair, arm, seed) to train, the cheapest first (small and naive, which every
    gap closed needs, are done before a long run can be cut short). The ghost-size curve adds
    the default plan at ghost 2, 4, 8, 16, 32 and the original batch, minus the recipe's own
    size (the ``recipe`` row is that point), on the pair's first ``ghost_seeds`` seeds."""
    cost = {"small": 1, "naive": 1, "budget": 1.5, "recipe": 8, "keep": 8, "calibrated": 12,
            "linear": 8}
    heavy = {"shapes2d": 3, "glyphs2d": 20}
    out = []
    for p in pairs:
        ss = seeds[:p.seeds] if p.seeds else seeds
        out += [(p, a, s, settings) for a in arms if a not in p.skip for s in ss]
        if ghost and p.ghost_seeds:
            default_ghost = arm_plan(p, "recipe", _size(p)).ghost_batch_size
            for g in sorted({*GHOSTS, p.small} - {default_ghost}):
                out += [(p, f"ghost{g}", s, settings) for s in ss[:p.ghost_seeds]]
    return sorted(out, key=lambda j: (cost.get(j[1], 8) * heavy.get(j[0].name, 1), j[2],
                                      j[1] != f"ghost{j[0].small}"))


def _size(pair: Pair) -> int:
    import fidelity_data as fd

    return fd.SIZES[pair.name][0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="<= 15 minutes on 2 CPU cores "
                      "(default): one seed of three pairs")
    mode.add_argument("--cpu", action="store_true", help="the published CPU tables: every "
                      "pair, 3 seeds, ghost-size curves, M up to 128 (hours on 2 cores; run "
                      "in parts with --pairs/--seeds and merge with --render)")
    mode.add_argument("--full", action="store_true", help="larger M, epochs and seeds (GPU)")
    ap.add_argument("--pairs", default=None, help="comma-separated pair labels (e.g. "
                    "'signals1d,tabular M=32')")
    ap.add_argument("--arms", default=None, help="comma-separated arms (small and naive are "
                    "always run: gap closed needs them)")
    ap.add_argument("--seeds", type=int, default=None, help="number of seeds")
    ap.add_argument("--seed-start", type=int, default=0, help="first seed (held-out runs)")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (1 thread each)")
    ap.add_argument("--smoke-batch", type=int, default=None,
                    help="the smoke test's proxy small batch (its --smoke-batch); e.g. the "
                    "original batch, so a CPU runs the real pair instead of the CPU proxy")
    ap.add_argument("--device", default="cpu", help="where the arms train and the real-batch "
                    "smoke runs (e.g. cuda for --full); the CLI-path rows stay on the CPU")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI-path smoke rows")
    ap.add_argument("--no-ghost", action="store_true", help="skip the ghost-size curves")
    ap.add_argument("--cli-steps", default=None, help="LABEL=N,...: the CLI rows' update "
                    "counts instead of measuring a default 60 s run per pair")
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--resume", default=None, metavar="JSON", help="rows saved by an earlier "
                    "--out run of the same settings: kept, and their jobs not run again")
    ap.add_argument("--render", nargs="+", default=None, metavar="JSON",
                    help="print the tables from rows saved by --out (several runs merged)")
    args = ap.parse_args(argv)
    if args.render:
        return render(args.render, args.full)
    settings = dict(FULL if args.full else CPU if args.cpu else QUICK)
    settings["smoke_batch"] = args.smoke_batch
    settings["device"] = args.device
    pairs = settings.pop("pairs")
    seeds = settings.pop("seeds")
    if args.pairs:
        pairs = [p for p in pairs if p.label in args.pairs.split(",")]
    if args.seeds or args.seed_start:
        seeds = list(range(args.seed_start, args.seed_start + (args.seeds or len(seeds))))
    arms = list(ARMS) if not args.arms else \
        ["small", "naive", *[a for a in args.arms.split(",") if a not in ("small", "naive")]]
    t0 = time.perf_counter()
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    cli_runs: dict[str, Any] = {}
    with ctx.Pool(max(1, args.jobs)) as pool:
        if args.cli_steps:
            settings["cli_steps"] = {k: int(v) for k, v in
                                     (kv.rsplit("=", 1) for kv in args.cli_steps.split(","))}
        elif not args.no_cli:
            for label, res in pool.imap_unordered(measure_cli, [(p, settings) for p in pairs]):
                cli_runs[label] = res
                print(f"[{time.perf_counter() - t0:6.0f}s] {label}: a default CLI smoke run "
                      f"made {res['arm_steps']} updates (proxy {res['proxy']}), "
                      f"{res['level']}", file=sys.stderr, flush=True)
            settings["cli_steps"] = {k: v["steps"] for k, v in cli_runs.items()}
        rows = json.loads(Path(args.resume).read_text())["rows"] if args.resume else []
        done = {(r["pair"], r["arm"], r["seed"]) for r in rows}
        todo = [j for j in jobs_for(pairs, arms, seeds, settings, not args.no_ghost)
                if (j[0].label, j[1], j[2]) not in done]
        for r in pool.imap_unordered(run_job, todo):
            rows.append(r)
            if args.out:  # after every row: a run stopped early keeps what finished
                _write(args.out, cli_runs, settings, rows, "")
            print(f"[{time.perf_counter() - t0:6.0f}s] {r['pair']} {r['arm']} seed {r['seed']}: "
                  f"acc {100 * r['acc']:.2f}% verdict {r.get('verdict', '—')} "
                  f"cli {r.get('cli_verdict', '—')} ({r['seconds']:.0f}s)", file=sys.stderr,
                  flush=True)
    cmd = "python benchmarks/fidelity.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"# lbconvert fidelity benchmark\n\nCommand: `{cmd.strip()}` — "
          f"{time.perf_counter() - t0:.0f} s wall, {args.jobs} worker(s), "
          f"{os.cpu_count()} CPU(s); smoke test per arm: "
          + (f"{settings['smoke_steps']} updates per smoke arm" if settings["smoke_steps"]
             else f"default budget {settings['smoke_time']:g} s")
          + (f", proxy small batch {args.smoke_batch}" if args.smoke_batch else "")
          + (f"; CLI-path rows: {settings['cli_steps']} updates" if settings.get("cli_steps")
             else ""))
    import fidelity_count

    print(tables(rows, pairs, seeds))
    print(fidelity_count.agreement_section(rows, pairs))
    print(fidelity_count.ghost_table(rows, pairs))
    print(fidelity_count.loss_section(rows))
    if args.out:
        _write(args.out, cli_runs, settings, rows, cmd.strip())
    return 0


def render(paths: list[str], full: bool) -> int:
    """The tables of rows saved by earlier runs (``--out``), merged; each run's command."""
    import fidelity_count

    rows, labels = [], []
    print("# lbconvert fidelity benchmark (merged runs)\n")
    for path in paths:
        saved = json.loads(Path(path).read_text())
        print(f"- `{saved['command'] or '(stopped before the end)'}`: {len(saved['rows'])} rows"
              + (f"; CLI-path rows at {saved['cli_steps']} updates" if saved.get("cli_steps")
                 else ""))
        rows += saved["rows"]
        labels += sorted({r["pair"] for r in saved["rows"]} - set(labels))
    presets = (FULL,) if full else (QUICK, CPU)  # the same label is the same pair in these
    known = {p.label: p for preset in presets for p in preset["pairs"]}
    pairs = [known[label] for label in labels if label in known]
    seeds = sorted({r["seed"] for r in rows})
    print(tables(rows, pairs, seeds))
    print(fidelity_count.agreement_section(rows, pairs))
    print(fidelity_count.ghost_table(rows, pairs))
    print(fidelity_count.loss_section(rows))
    return 0


def _write(path: str, cli_runs: dict, settings: dict, rows: list, cmd: str) -> None:
    Path(path).write_text(json.dumps({"command": cmd, "cli_runs": cli_runs,
                                      "cli_steps": settings.get("cli_steps"), "rows": rows},
                                     indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
