"""The HTML sweep report: the runs plotted, then the summary table (``--format html``).

One self-contained page (inline SVG and CSS, no script, no CDN, opens offline): updates
against batch size on log axes, each run a dot coloured by its verdict, with the
baseline's update count as the line Hoffer et al.'s regime adaptation asks a large batch to
reach; ‖w − w0‖ against log(update) overlaid for the runs that monitored it (the ultra-slow
diffusion curve, Hoffer et al. 2017 §5); then :mod:`lbconvert.audit.sweep`'s table.
Renderers are pure: this returns text.
"""

from __future__ import annotations

import math
from html import escape

from lbconvert.audit.pipeline import AuditReport
from lbconvert.audit.sweep import VERDICTS, sweep_rows

COLOURS = {"error": "#c62828", "warning": "#ef6c00", "note": "#1565c0", "clean": "#2e7d32"}
W, H, PAD = 640, 360, 56


def _ticks(lo: float, hi: float) -> list[float]:
    """Powers of 10 (and 2 when the span is short) between lo and hi, in log space."""
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    ticks = [10.0 ** k for k in range(a, b + 1)]
    if b - a <= 2:
        ticks = sorted({t * m for t in ticks for m in (1, 2, 5)})
    return [t for t in ticks if lo <= t <= hi] or [lo, hi]


def _axis(lo: float, hi: float, n: int, flip: bool):
    la, lb = math.log10(lo), math.log10(hi)
    span = (lb - la) or 1.0

    def to(v: float) -> float:
        f = (math.log10(v) - la) / span
        return PAD + (1 - f) * (n - 2 * PAD) if flip else PAD + f * (n - 2 * PAD)
    return to


def _frame(title: str, xlabel: str, ylabel: str, xs: tuple[float, float],
           ys: tuple[float, float], ylog: bool = True) -> tuple[list[str], object, object]:
    fx = _axis(*xs, W, False)
    fy = _axis(*ys, H, True) if ylog else (
        lambda v: PAD + (1 - (v - ys[0]) / ((ys[1] - ys[0]) or 1.0)) * (H - 2 * PAD))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>',
           f'<rect x="{PAD}" y="{PAD}" width="{W - 2 * PAD}" height="{H - 2 * PAD}" '
           'fill="none" stroke="#999"/>']
    for t in _ticks(*xs):
        x = fx(t)
        out.append(f'<line x1="{x:.1f}" y1="{H - PAD}" x2="{x:.1f}" y2="{H - PAD + 4}" '
                   f'stroke="#999"/><text x="{x:.1f}" y="{H - PAD + 16}" '
                   f'text-anchor="middle">{t:g}</text>')
    yt = _ticks(*ys) if ylog else [ys[0] + k * (ys[1] - ys[0]) / 4 for k in range(5)]
    for t in yt:
        y = fy(t)
        out.append(f'<line x1="{PAD - 4}" y1="{y:.1f}" x2="{PAD}" y2="{y:.1f}" stroke="#999"/>'
                   f'<text x="{PAD - 6}" y="{y + 4:.1f}" text-anchor="end">{t:.3g}</text>')
    out.append(f'<text x="{W / 2}" y="{H - 12}" text-anchor="middle">{escape(xlabel)}</text>'
               f'<text x="14" y="{H / 2}" text-anchor="middle" '
               f'transform="rotate(-90 14 {H / 2})">{escape(ylabel)}</text>'
               f'<text x="{W / 2}" y="24" text-anchor="middle" class="t">{escape(title)}</text>')
    return out, fx, fy


def updates_plot(report: AuditReport) -> str:
    """SVG: updates vs batch size (log-log), one dot per run, colour = verdict."""
    rows = [r for r in sweep_rows(report) if r.batch and r.updates and r.updates > 0]
    if not rows:
        return "<p>No run has both a known batch size and an update count to plot.</p>"
    bx = [float(r.batch) for r in rows]
    uy = [float(r.updates) for r in rows] + ([report.baseline_updates]
                                             if report.baseline_updates else [])
    xs = (min(bx) / 1.5, max(bx) * 1.5)
    ys = (min(uy) / 1.5, max(uy) * 1.5)
    out, fx, fy = _frame("optimizer updates vs batch size", "global batch size (log)",
                         "updates (log)", xs, ys)
    if report.baseline_updates:
        y = fy(report.baseline_updates)
        out.append(f'<line x1="{PAD}" y1="{y:.1f}" x2="{W - PAD}" y2="{y:.1f}" stroke="#555" '
                   f'stroke-dasharray="5 4"/><text x="{W - PAD - 4}" y="{y - 5:.1f}" '
                   f'text-anchor="end">baseline: {report.baseline_updates:,.0f} updates '
                   '(regime adaptation keeps this)</text>')
    # several runs at one (batch, updates): spread them a little so each stays visible
    seen: dict[tuple[float, float], int] = {}
    for r in reversed(rows):  # worst drawn last, on top
        key = (round(fx(r.batch)), round(fy(r.updates)))
        k = seen[key] = seen.get(key, -1) + 1
        x, y = fx(r.batch) + 5 * math.sin(k * 2.4) * min(k, 1) * math.sqrt(k), \
            fy(r.updates) + 5 * math.cos(k * 2.4) * min(k, 1) * math.sqrt(k)
        ratio = f", ×{r.updates_ratio:.3g} baseline" if r.updates_ratio else ""
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{COLOURS[r.verdict]}" '
                   f'fill-opacity="0.8" class="run {r.verdict}"><title>{escape(r.name)}: '
                   f'{r.verdict}, batch {r.batch}, {r.updates:,.0f} updates{ratio}'
                   f'{escape(" — " + r.worst) if r.worst else ""}</title></circle>')
    out.append(_legend())
    return "\n".join(out) + "</svg>"


def _legend() -> str:
    items = []
    for i, v in enumerate(VERDICTS):
        x = PAD + 10 + i * 90
        # between the title and the frame: never over a data point
        items.append(f'<circle cx="{x}" cy="{PAD - 14}" r="5" fill="{COLOURS[v]}"/>'
                     f'<text x="{x + 9}" y="{PAD - 10}">{v}</text>')
    return "".join(items)


def distance_plot(report: AuditReport) -> str:
    """SVG: ‖w − w0‖ vs update (log x) overlaid for the runs that monitored it."""
    curves = []
    verdict = {r.path: r.verdict for r in sweep_rows(report)}
    for run in report.runs:
        s = run.history.series.get("weight_distance")
        if s is None:
            continue
        pts = [(float(t), float(v)) for t, v in zip(s.steps, s.values)
               if t > 0 and math.isfinite(v)]
        if len(pts) >= 2:
            curves.append((run.history, pts, verdict.get(run.history.path, "clean")))
    if not curves:
        return ("<p>No run monitored ‖w − w0‖ (log <code>lbconvert/weight_distance</code>, "
                "or keep checkpoints from update 0).</p>")
    xs = (min(p[0] for _, c, _ in curves for p in c), max(p[0] for _, c, _ in curves
                                                         for p in c) * 1.05)
    top = max(p[1] for _, c, _ in curves for p in c)
    out, fx, fy = _frame("weight distance ‖w − w0‖ vs update", "update (log)", "‖w − w0‖",
                         xs, (0.0, top * 1.05 or 1.0), ylog=False)
    for h, pts, v in sorted(curves, key=lambda c: -VERDICTS.index(c[2])):
        step = max(1, len(pts) // 400)  # at most ~400 vertices a curve: the page stays light
        path = " ".join(f"{fx(t):.1f},{fy(d):.1f}" for t, d in pts[::step] + pts[-1:])
        out.append(f'<polyline points="{path}" fill="none" stroke="{COLOURS[v]}" '
                   f'stroke-width="1.5" stroke-opacity="0.8" class="curve {v}"><title>'
                   f'{escape(h.name or h.path)}: {v}, final ‖w − w0‖ {pts[-1][1]:.4g} at '
                   f'update {pts[-1][0]:,.0f}</title></polyline>')
    out.append(_legend())
    return "\n".join(out) + "</svg>"


_CSS = """body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
svg{width:100%;max-width:720px;height:auto;font-size:11px;display:block;margin:8px 0 24px}
svg .t{font-size:13px;font-weight:600}table{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
td.n{text-align:right}.v{font-weight:600;color:#fff;border-radius:3px;padding:1px 6px}
""" + "".join(f".v.{v}{{background:{c}}}" for v, c in COLOURS.items())


def render_html(report: AuditReport) -> str:
    """The sweep report as one self-contained HTML page."""
    rows = sweep_rows(report)
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    c = report.counts()
    head = (f"{len(rows)} runs: " + ", ".join(f"{counts[v]} {v}" for v in VERDICTS) +
            f" — {c['error']} errors, {c['warning']} warnings, {c['note']} notes "
            f"(fail on {report.fail_on}: exit {report.exit_code})")
    body = [f"<h1>lbconvert audit</h1><p>{escape(head)}</p>",
            f"<p>Baseline: {escape(report.baseline or 'none (LB001 cannot judge updates)')}"
            "</p>", updates_plot(report), distance_plot(report),
            "<h2>Runs, worst first</h2><table><thead><tr><th>verdict</th><th>run</th>"
            "<th>batch</th><th>updates</th><th>× baseline updates</th><th>worst finding</th>"
            "<th>not judged</th></tr></thead><tbody>"]
    for r in rows:
        body.append(
            f'<tr><td><span class="v {r.verdict}">{r.verdict}</span></td>'
            f"<td>{escape(r.name)}</td><td class=n>{r.batch or '?'}</td>"
            f"<td class=n>{'?' if r.updates is None else f'{r.updates:,.0f}'}</td>"
            f"<td class=n>{'?' if r.updates_ratio is None else f'{r.updates_ratio:.3g}'}</td>"
            f"<td>{escape(r.worst) or '—'}</td><td class=n>{r.not_judged}</td></tr>")
    body.append("</tbody></table>")
    for u in report.unreadable:
        body.append(f"<p><b>cannot read</b> {escape(u['run'])}: {escape(u['error'])}</p>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>lbconvert audit: {len(rows)} runs</title><style>{_CSS}</style></head>"
            "<body>\n" + "\n".join(body) + "\n</body></html>\n")
