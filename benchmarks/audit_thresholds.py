"""Evidence for the audit's update-count thresholds (LB001): gap closed vs share of updates.

Reads the fidelity benchmark's rows (``docs/fidelity/*.json``, written by
``benchmarks/fidelity.py``) and prints, per pair, M and arm: the share of the original run's
updates, the LR ratio, whether the arm warmed up, and the gap closed (mean and seed range),
then the bounds LB001 takes from them. ``--measure OUT.json`` first trains the arms the
fidelity benchmark leaves out — the naive recipe and the adapted recipe (√M LR, warmup,
GhostBatchNorm, LARS) at ×2 and ×4 the original epochs, i.e. 25% and 50% of its updates at
M = 8 — with the fidelity benchmark's own data, models and training loop (no smoke test)::

    python benchmarks/audit_thresholds.py                       # the table, from the rows
    python benchmarks/audit_thresholds.py --measure docs/fidelity/update-share-seeds0-2.json

Gap closed = (acc − acc_naive) / (acc_small − acc_naive), per seed, as in docs/fidelity.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ROWS = ROOT / "docs" / "fidelity"
# the rows the thresholds are read from (older recipes' rows in sub-folders are not used)
FILES = ("quick-seeds0-2.json", "quick-seeds3-5.json", "quick-seeds6-8.json",
         "full-on-cpu-seeds0-2.json", "update-share-seeds0-2.json")
# arms trained by --measure: (name, regime factor, adapted?)
EXTRA = (("naive-x2", 2, False), ("naive-x4", 4, False),
         ("adapted-x2", 2, True), ("adapted-x4", 4, True))


def _job(job: tuple[Any, str, int]) -> dict[str, Any]:
    """Train one (pair, arm, seed) to the end with fidelity.py's loop; no smoke test."""
    pair, arm, seed = job
    sys.path.insert(0, str(HERE))
    import fidelity as fb
    import fidelity_data as fd
    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    x, y, xt, yt = fd.dataset(pair.name)
    n = len(x)
    torch.manual_seed(seed)
    original = getattr(fd, pair.model)()
    out: dict[str, Any] = {"pair": pair.name, "arm": arm, "seed": seed}
    factor, adapted = {"small": (1, False), "naive": (1, False),
                       **{a: (k, ad) for a, k, ad in EXTRA}}[arm]
    cfg = fb.train_config(pair, n)
    make_plan = fb._lb("make_plan")
    if arm == "small":
        model, batch = fb._copy(original), pair.small
        spe = math.ceil(n / pair.small)
        updates = int(round(spe * pair.epochs))
        opt, sched = fb._sgd(model, pair, spe)
        out.update(lr=pair.lr, warmup_epochs=0.0, epochs=pair.epochs)
    elif not adapted:
        plan = make_plan(cfg, pair.large, rule="none", regime=factor, optimizer="keep",
                         warmup="none")
        model = fb._copy(original)
        longer = dataclasses.replace(pair, epochs=pair.epochs * factor)
        opt, sched = fb._sgd(model, longer, plan.steps_per_epoch_new)
        batch, updates = plan.target_batch, plan.updates_new
        out.update(lr=pair.lr, warmup_epochs=0.0, epochs=plan.epochs_new, ghost=None)
    else:
        plan = make_plan(cfg, pair.large, regime=factor)
        model = fb._copy(fb._lb("rewrite")(original, plan.ghost_batch_size).model)
        opt = fb._lb("make_optimizer")(model, plan)
        sched = fb._lb("make_scheduler")(opt, plan, plan.steps_per_epoch_new)
        batch, updates = plan.target_batch, plan.updates_new
        out.update(lr=plan.lr_new, warmup_epochs=plan.warmup_epochs, epochs=plan.epochs_new,
                   ghost=plan.ghost_batch_size, optimizer=plan.optimizer_new)
    w0 = [p.detach().clone() for p in model.parameters()]
    ok = fb.train(model, opt, sched, x, y, batch, updates, seed)
    out.update(acc=fb.evaluate(model, xt, yt) if ok else float("nan"),
               distance=fb.distance(model, w0), updates=updates, batch=batch,
               diverged=not ok, seconds=time.perf_counter() - t0)
    return out


def measure(out: Path, seeds: list[int], jobs: int) -> None:
    """Train small, naive and the EXTRA arms of the quick pairs signals1d and shapes2d."""
    sys.path.insert(0, str(HERE))
    import fidelity as fb

    pairs = [p for p in fb.QUICK["pairs"] if p.name in ("signals1d", "shapes2d")]
    arms = ["small", "naive", *[a for a, _, _ in EXTRA]]
    work = [(p, a, s) for p in pairs for a in arms for s in seeds]
    rows, t0 = [], time.perf_counter()
    with mp.get_context("fork").Pool(max(1, jobs)) as pool:
        for r in pool.imap_unordered(_job, work):
            rows.append(r)
            print(f"[{time.perf_counter() - t0:5.0f}s] {r['pair']} {r['arm']} seed "
                  f"{r['seed']}: acc {100 * r['acc']:.2f}%", file=sys.stderr, flush=True)
    out.write_text(json.dumps(sorted(rows, key=lambda r: (r["pair"], r["arm"], r["seed"])),
                              indent=1))


def load_rows(files: list[Path]) -> list[dict[str, Any]]:
    """Every row, tagged with its file (seeds and pairs are per file)."""
    rows = []
    for f in files:
        if f.is_file():
            for r in json.loads(f.read_text(encoding="utf-8")):
                rows.append({**r, "file": f.name})
    return rows


def arm_table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (file, pair, arm): M, share of updates, LR ratio, warmup, gap closed."""
    small = {(r["file"], r["pair"], r["seed"]): r for r in rows if r["arm"] == "small"}
    naive = {(r["file"], r["pair"], r["seed"]): r for r in rows if r["arm"] == "naive"}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r["arm"] in ("small", "calibrated"):  # calibrated duplicates recipe at ×1.00
            continue
        key = (r["file"], r["pair"], r["seed"])
        if key in small and key in naive:
            groups.setdefault((r["file"], r["pair"], r["arm"]), []).append(r)
    out, seen = [], set()
    for (file, pair, arm), rs in groups.items():
        same = (pair, arm, tuple(sorted((r["seed"], r["batch"], r["acc"]) for r in rs)))
        if same in seen:  # --measure re-trains naive: the same runs, counted once
            continue
        seen.add(same)
        closed = []
        for r in rs:
            s, nv = small[(file, pair, r["seed"])], naive[(file, pair, r["seed"])]
            den = s["acc"] - nv["acc"]
            closed.append((r["acc"] - nv["acc"]) / den if den else math.nan)
        s0 = small[(file, pair, rs[0]["seed"])]
        m = rs[0]["batch"] / s0["batch"]
        lr_ratio = rs[0]["lr"] / s0["lr"] if s0.get("lr") else _pair_lr_ratio(rs[0], pair)
        out.append({"file": file, "pair": pair, "arm": arm, "M": m,
                    "share": rs[0]["updates"] / s0["updates"],
                    "lr_ratio": lr_ratio, "lr_over_sqrt_m": lr_ratio / math.sqrt(m),
                    "warmup": bool(rs[0].get("warmup_epochs")),
                    "adapted": lr_ratio >= 0.5 * math.sqrt(m) and bool(rs[0].get("warmup_epochs")),
                    "closed_mean": statistics.fmean(closed), "closed_min": min(closed),
                    "closed_max": max(closed), "seeds": len(closed)})
    return sorted(out, key=lambda e: (not e["adapted"], e["share"], e["pair"], e["file"]))


def _pair_lr_ratio(row: dict[str, Any], pair: str) -> float:
    # fidelity.py's rows store no LR for the small arm: the original LRs of its pairs
    return row["lr"] / {"signals1d": 0.02, "shapes2d": 0.05}[pair]


def pooled(table: list[dict[str, Any]]) -> list[tuple[str, float, float, float, float, int,
                                                         float]]:
    """Per (kind, share of updates < 90%): (kind, share, mean, min, max gap closed, seeds,
    the worst pair's mean) over every pair, M and rows file — the rows
    ``lbconvert.audit.analyze.evidence.MEASURED`` holds.

    kind is "adapted" (LR ≥ √M/2 × the original's and a warmup) or "unscaled".
    """
    acc: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for e in table:
        if e["share"] < 0.9:
            kind = "adapted" if e["adapted"] else "unscaled"
            acc.setdefault((kind, round(e["share"], 4)), []).append(e)
    out = []
    for (kind, share), es in sorted(acc.items()):
        n = sum(e["seeds"] for e in es)
        per_pair: dict[str, list[tuple[float, int]]] = {}
        for e in es:
            per_pair.setdefault(e["pair"], []).append((e["closed_mean"], e["seeds"]))
        worst = min(sum(m * k for m, k in v) / sum(k for _, k in v) for v in per_pair.values())
        out.append((kind, share, round(sum(e["closed_mean"] * e["seeds"] for e in es) / n, 2),
                    round(min(e["closed_min"] for e in es), 2),
                    round(max(e["closed_max"] for e in es), 2), n, round(worst, 2)))
    return out


def bounds(rows: list[tuple]) -> dict[str, float]:
    """Per kind, the smallest measured share at which every pair's runs closed at least half
    the gap (mean over seeds): below it the evidence says such a run can lose most of the
    gap, so LB001 is an error there (docs/audit-rules.md). Never measured: 0.9."""
    out = {}
    for kind in ("adapted", "unscaled"):
        ok = [r[1] for r in rows if r[0] == kind and r[6] >= 0.5]
        out[kind] = min(ok) if ok else 0.9
    return out


def render(table: list[dict[str, Any]]) -> str:
    """Markdown: the arm table, the pooled rows and the bounds LB001 uses."""
    lines = ["| rows | pair | M | arm | share of updates | LR ×√M | warmup | adapted | "
             "gap closed mean (seed min–max) |", "|---|---|---:|---|---:|---:|---|---|---:|"]
    for e in table:
        lines.append(f"| {e['file']} | {e['pair']} | {e['M']:g} | {e['arm']} | "
                     f"{e['share']:.1%} | {e['lr_over_sqrt_m']:.2f} | "
                     f"{'yes' if e['warmup'] else 'no'} | {'yes' if e['adapted'] else 'no'} | "
                     f"{e['closed_mean']:.0%} ({e['closed_min']:.0%}–{e['closed_max']:.0%}) |")
    rows = pooled(table)
    lines += ["", "Pooled over pairs, M and seeds (kind, share, mean, min, max, seeds, the "
              "worst pair's mean) — "
              "`lbconvert.audit.analyze.evidence.MEASURED`:", "", "```python"]
    lines += [f"    {r!r}," for r in rows]
    lines += ["```", "", "Error below (smallest share at which every pair closed ≥ 50% in "
              "the mean): " + ", ".join(f"{k} {v:.4g}" for k, v in bounds(rows).items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--measure", type=Path, default=None,
                    help="train the naive/adapted ×2 and ×4 arms first, rows to this JSON")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    if args.measure:
        measure(args.measure, list(range(args.seeds)), args.jobs)
    print(render(arm_table(load_rows([ROWS / f for f in FILES]))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
