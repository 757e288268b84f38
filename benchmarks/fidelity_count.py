"""How ``benchmarks/fidelity.py`` counts agreement between the smoke verdict and the trained
outcome, and its ghost-size curves (issue 23).

Counted honestly: a row that cannot disagree is listed but not counted —
the ``naive`` arm is judged against itself (its gap closed is 0% by definition, so it is
FAIL by construction), and a ``calibrated`` row whose multiplier is ×1.00 trains exactly the
``recipe`` row again (a duplicate). Rows whose outcome lies between the thresholds (50–90%
closed) expect either verdict and are not counted either. Each count comes with a Wilson
score 95% interval (Wilson 1927), for the real-batch verdicts and the CLI-path verdicts
separately, and for the pairs the thresholds were chosen on apart from the held-out pairs.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

GOOD, BAD = 0.9, 0.5  # gap closed ≥ GOOD should PASS; < BAD should FAIL (as fidelity.py)
#: The pairs the verdict's thresholds were chosen on (issue 17); every other pair is held out.
THRESHOLD_PAIRS = ("signals1d", "shapes2d")
#: The pairs the ghost default was chosen on; ``tabular`` is held out from it as well.
GHOST_DEFAULT_PAIRS = ("signals1d", "shapes2d", "glyphs2d")


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% at the default z)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def gap_closed(acc: float, small: float, naive: float) -> float:
    den = small - naive
    return (acc - naive) / den if den else float("nan")


def expected(closed: float) -> str:
    if not math.isfinite(closed):
        return "FAIL"
    return "PASS" if closed >= GOOD else ("FAIL" if closed < BAD else "either")


def status(row: dict[str, Any], exp: str) -> str:
    """Why a row is or is not counted: ``counted``, ``by construction``, ``duplicate``,
    ``between``."""
    if row["arm"] == "naive":
        return "by construction"
    if row["arm"] == "calibrated" and round(row.get("calibration", 0.0), 2) == 1.0:
        return "duplicate"
    if exp == "either":
        return "between"
    return "counted"


def judged_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each smoke-tested (pair, arm, seed) with its gap closed, expected verdict and status."""
    by = {(r["pair"], r["arm"], r["seed"]): r for r in rows}
    out = []
    for r in sorted(rows, key=lambda r: (r["pair"], r["arm"], r["seed"])):
        sm, nv = by.get((r["pair"], "small", r["seed"])), by.get((r["pair"], "naive", r["seed"]))
        if "verdict" not in r or sm is None or nv is None:
            continue
        closed = gap_closed(r["acc"], sm["acc"], nv["acc"])
        exp = expected(closed)
        out.append({**r, "closed": closed, "expected": exp, "status": status(r, exp)})
    return out


def held_out(pair_label: str) -> bool:
    return pair_label.split(" ")[0] not in THRESHOLD_PAIRS


def tally(judged: list[dict[str, Any]], key: str) -> tuple[int, int]:
    """(agreeing, counted) over the counted rows for verdict column ``key``."""
    rs = [r for r in judged if r["status"] == "counted" and key in r]
    return sum(r[key] == r["expected"] for r in rs), len(rs)


def _frac(k: int, n: int) -> str:
    if not n:
        return "—"
    lo, hi = wilson(k, n)
    return f"{k}/{n} = {100 * k / n:.0f}% [{100 * lo:.0f}–{100 * hi:.0f}%]"


def agreement_section(rows: list[dict[str, Any]], pairs: list[Any]) -> str:
    """The per-row table and the agreement counts (real batches and CLI path)."""
    judged = judged_rows(rows)
    out = ["\n### Smoke verdict against the final accuracy, per (pair, arm, seed)\n",
           "Real: the benchmark's smoke settings (real batch pair, fixed updates). CLI: the "
           "default CPU proxy batches and the update count of a default 60 s run, "
           "extrapolated. Rows not counted say why.\n",
           "| pair | arm | seed | held-out acc | gap closed | expected | real verdict "
           "| final ln(d_c/d_o) | CLI verdict | CLI proxy, updates | CLI final ln | counted |",
           "|---|---|---:|---:|---:|---|---|---:|---|---|---:|---|"]
    for r in judged:
        sm, cli = r.get("smoke") or {}, r.get("cli_smoke") or {}
        proxy = cli.get("proxy") or ["?", "?"]
        cli_where = f"{proxy[0]}/{proxy[1]}, {cli.get('steps')}" if cli else "—"
        out.append(
            f"| {r['pair']} | {r['arm']} | {r['seed']} | {100 * r['acc']:.2f}% "
            f"| {100 * r['closed']:.0f}% | {r['expected']} | {r['verdict']} "
            f"| {_f(sm.get('final_gap'))} | {r.get('cli_verdict', '—')} | {cli_where} "
            f"| {_f(cli.get('final_gap'))} | {r['status']} |")
    skipped = {s: sum(r["status"] == s for r in judged)
               for s in ("by construction", "duplicate", "between")}
    out.append(f"\nNot counted: {skipped['by construction']} by construction (naive against "
               f"itself), {skipped['duplicate']} duplicates (calibrated at ×1.00 = recipe), "
               f"{skipped['between']} between the thresholds (50–90% closed).\n")
    out.append("| rows | real-batch verdict agrees | CLI-path verdict agrees |")
    out.append("|---|---:|---:|")
    groups = [("thresholds' pairs (" + ", ".join(THRESHOLD_PAIRS) + ")",
               [r for r in judged if not held_out(r["pair"])])]
    for label in sorted({r["pair"] for r in judged if held_out(r["pair"])}):
        groups.append((f"held-out pair {label}", [r for r in judged if r["pair"] == label]))
    groups.append(("all held-out pairs", [r for r in judged if held_out(r["pair"])]))
    groups.append(("all", judged))
    for name, rs in groups:
        out.append(f"| {name} | {_frac(*tally(rs, 'verdict'))} "
                   f"| {_frac(*tally(rs, 'cli_verdict'))} |")
    out.append("\nIntervals: Wilson score, 95%.")
    return "\n".join(out)


def ghost_curve(rows: list[dict[str, Any]], label: str) -> list[tuple[int, float, int, bool]]:
    """``(ghost, mean gap closed, seeds, is_default)`` for pair ``label``: the default plan
    (``recipe``) and its ``ghostG`` variants, each against the same seeds' small and naive
    means."""
    by = {(r["arm"], r["seed"]): r for r in rows if r["pair"] == label}
    points = []
    arms = [a for a, _ in by if a == "recipe" or a.startswith("ghost")]
    for arm in sorted(set(arms)):
        seeds = [s for (a, s) in by if a == arm and ("small", s) in by and ("naive", s) in by]
        if not seeds:
            continue
        acc = statistics.fmean(by[(arm, s)]["acc"] for s in seeds)
        small = statistics.fmean(by[("small", s)]["acc"] for s in seeds)
        naive = statistics.fmean(by[("naive", s)]["acc"] for s in seeds)
        points.append((int(by[(arm, seeds[0])]["ghost"]), gap_closed(acc, small, naive),
                       len(seeds), arm == "recipe"))
    return sorted(points)


def ghost_table(rows: list[dict[str, Any]], pairs: list[Any]) -> str:
    """Gap closed per ghost size, one row per pair (the default plan's ghost marked *)."""
    curves = {p.label: ghost_curve(rows, p.label) for p in pairs}
    sizes = sorted({g for c in curves.values() for g, *_ in c})
    if not sizes:
        return ""
    out = ["\n### Ghost-size curves: gap closed by the default plan at each ghost batch\n",
           "| pair | original batch | " + " | ".join(f"ghost {g}" for g in sizes) + " |",
           "|---|---:|" + "---:|" * len(sizes)]
    for p in pairs:
        cells = {g: (c, n, d) for g, c, n, d in curves[p.label]}
        row = []
        for g in sizes:
            if g not in cells:
                row.append("—")
                continue
            c, n, d = cells[g]
            row.append(f"{'*' if d else ''}{100 * c:.0f}% ({n})")
        out.append(f"| {p.label} | {p.small} | " + " | ".join(row) + " |")
    out.append("\n(n) = seeds; * = the default plan's ghost size (the `recipe` arm).")
    return "\n".join(out)


def loss_section(rows: list[dict[str, Any]], arms: tuple[str, ...] = ("linear", "recipe")) -> str:
    """Issue 23 item 5: does the smoke run's training loss see a collapse? Per smoke-tested
    row of ``arms``: the converted arm's loss at its first and last mark, the original arm's
    last loss, chance (ln classes), beside the trained run's held-out accuracy. "Sees it" =
    the converted loss ends above where it started or within 10% of chance."""
    out = ["\n### The smoke run's training loss (converted arm) against the trained outcome\n",
           "| pair | arm | seed | trained held-out acc | path | smoke updates "
           "| converted loss first → last | original last | chance ln C | loss sees a collapse |",
           "|---|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: (r["pair"], r["arm"], r["seed"])):
        if r["arm"] not in arms:
            continue
        for path, key in (("real", "smoke"), ("CLI", "cli_smoke")):
            sm = r.get(key) or {}
            loss = sm.get("loss") or {}
            conv, orig = loss.get("converted"), loss.get("original")
            if not conv:
                continue
            chance = sm.get("chance_loss", float("nan"))
            sees = conv[1] >= conv[0] or conv[1] >= 0.9 * chance
            out.append(f"| {r['pair']} | {r['arm']} | {r['seed']} | {100 * r['acc']:.2f}% "
                       f"| {path} | {sm.get('steps')} | {conv[0]:.3f} → {conv[1]:.3f} "
                       f"| {_f(orig[1] if orig else None)} | {chance:.3f} "
                       f"| {'yes' if sees else 'no'} |")
    return "\n".join(out)


def _f(v: Any) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.2f}"
