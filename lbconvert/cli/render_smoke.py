"""Terminal rendering of the smoke test (``lbconvert.smoke.diffusion.DiffusionResult``) with rich.

No torch import: it reads the result's plain fields only.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from rich.console import Console

    from lbconvert.smoke.diffusion import DiffusionResult

_STYLE = {"PASS": "bold green", "WARN": "bold yellow", "FAIL": "bold red",
          "INCONCLUSIVE": "bold blue"}


def render_smoke(result: DiffusionResult, console: Console) -> None:
    """Print the arms (slopes with 95% CIs), distance ratios by updates and by samples, the
    verdict with its likely cause, calibration and sharpness when present, proxy and timings."""
    from rich.table import Table

    lo, hi = result.window
    arms = Table(
        title=f"Weight diffusion ‖w_t − w_0‖ vs ln t — fit window t ∈ [{lo}, {hi}] "
        f"(updates), device {result.device}"
    )
    for col in (
        "arm",
        "batch (micro×accum)",
        "ghost",
        "optimizer",
        "LR",
        "updates",
        "samples",
        "slope [95% CI]",
        "d(end)",
        "loss(end)",
    ):
        arms.add_column(col, justify="left" if col in ("arm", "optimizer") else "right")
    for name, arm in result.arms.items():
        end = arm.marks[-1] if arm.marks else None
        slope = (
            f"{arm.fit.slope:.3g} [{arm.fit.ci_low:.3g}, {arm.fit.ci_high:.3g}]" if arm.fit else "—"
        )
        arms.add_row(
            name,
            f"{arm.batch} ({arm.micro_batch}×{arm.accumulation})",
            str(arm.ghost_batch_size or "—"),
            arm.optimizer,
            f"{arm.lr:.3g}",
            str(arm.steps),
            f"{arm.samples_seen:,}",
            slope,
            _num(end.distance if end else None),
            _num(end.loss if end else None),
        )
    console.print(arms)

    upd = Table(title="Distance ratios at equal updates")
    for col in ("t", "d original", "d naive", "d converted", "naive/orig", "conv/orig"):
        upd.add_column(col, justify="right")
    for row in result.by_updates:
        upd.add_row(
            str(row["t"]),
            _num(row["d_original"]),
            _num(row["d_naive"]),
            _num(row["d_converted"]),
            _num(row["naive/original"]),
            _num(row["converted/original"]),
        )
    console.print(upd)

    smp = Table(title="At equal samples seen (large arms at update u, original at u·M)")
    for col in (
        "samples",
        "t orig",
        "t large",
        "d original",
        "d naive",
        "d converted",
        "naive/orig",
        "conv/orig",
    ):
        smp.add_column(col, justify="right")
    for row in result.by_samples:
        smp.add_row(
            f"{row['samples']:,}",
            f"{row['t_original']:g}",
            str(row["t_large"]),
            _num(row["d_original"]),
            _num(row["d_naive"]),
            _num(row["d_converted"]),
            _num(row["naive/original"]),
            _num(row["converted/original"]),
        )
    if result.by_samples:
        console.print(smp)
    else:
        console.print(
            "[dim]No common range of samples seen: the run is shorter than M updates.[/dim]"
        )

    v = result.verdict
    console.print(f"Smoke verdict: [{_STYLE.get(v.level, 'bold')}]{v.level}[/] — {v.reason}")
    if v.likely_cause:
        label = "to settle it" if v.level == "INCONCLUSIVE" else "likely cause"
        console.print(f"  {label}: {v.likely_cause}")
    ends = getattr(v, "final_distance", None)
    if ends:
        parts = [
            f"{name} {_num(e['distance'])} at update {e['update']:,}"
            + (" (extrapolated)" if e["extrapolated"] else "")
            for name, e in ends.items()
        ]
        console.print("  where each real run ends, ‖w − w₀‖ (d = a + b·ln t beyond the smoke "
                      "run): " + "; ".join(parts))
    console.print(f"  [dim]compared by {result.comparison_basis}[/dim]")
    collapse = getattr(result, "collapse", None)
    if collapse:
        style = "bold red" if collapse.get("collapsed") else "dim"
        console.print(f"  [{style}]collapse: {collapse['line']}[/]", highlight=False)

    cal = result.calibration
    if cal is not None:
        eff = (
            f", {cal.effective_multiplier:.3g}× the original LR" if cal.effective_multiplier else ""
        )
        console.print(
            f"Calibrated LR multiplier: {cal.multiplier:.3g}× the plan's LR → {cal.lr:.4g}"
            f"{eff} (rule: {cal.rule_multiplier:.3g}×, √M = {cal.sqrt_m:.3g}); final "
            f"ln(d_conv/d_orig) {_num(cal.final_gap)} over {len(cal.trials)} runs of "
            f"{cal.steps} updates"
        )
        for note in cal.notes:
            console.print(f"  [dim]{note}[/dim]")
    for name, arm in result.arms.items():
        if arm.sharpness:
            s = arm.sharpness
            console.print(
                f"Sharpness (Keskar 2017, ε={s['epsilon']:g}) of the {name} end point: "
                f"{s['sharpness']:.4g}% (loss {s['loss']:.4g} → {s['max_loss']:.4g}); "
                "reported only, not part of the verdict"
            )
    ns = getattr(result, "noise_scale", None)
    if ns:
        pts = "; ".join(
            f"{pt['at']} (update {pt['update']}): "
            + (f"{_num(pt['b_simple'])} ± {_num(pt['stderr'])}" if pt.get("b_simple")
               else "not resolved")
            for pt in ns.get("points") or [])
        cost = ns.get("cost") or {}
        console.print(
            f"Noise scale B_simple (McCandlish et al. 2018) at the original weights, b_s "
            f"{ns['b_small']} vs {ns['b_big']} accumulated, data {ns['data']}: {pts} "
            f"[dim]({cost.get('passes')} extra passes of {ns['b_small']}, "
            f"{cost.get('seconds', 0):.2g}s)[/dim]",
            highlight=False,
        )
    p = result.proxy
    console.print(
        f"[dim]Proxy: batches {p['small_batch']} / {p['large_batch']} (M = "
        f"{p['plan_ratio']:g}), ghost {p['ghost_batch_size']}, warmup "
        f"{p['warmup_steps']} updates, data {result.data}, seed {result.seed}; time "
        + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
        + "[/dim]"
    )
    layout = getattr(result, "layout", None)
    if layout:
        from rich.table import Table

        from lbconvert.report.markdown import layout_rows, layout_summary

        console.print(layout_summary(layout))
        if layout.get("world_size", 1) > 1:
            table = Table("rank", "host", "device", "step time (s) orig / naive / conv",
                          "peak memory", box=None)
            for row in layout_rows(layout):
                table.add_row(*row)
            console.print(table)
        for note in layout.get("notes") or []:
            console.print(f"[dim]note: {note}[/dim]")
    for note in result.notes + [n for a in result.arms.values() for n in a.notes]:
        console.print(f"[dim]note: {note}[/dim]")


def _num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.3g}"
