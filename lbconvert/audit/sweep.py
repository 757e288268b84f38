"""The sweep summary: one line per audited run, worst first.

A sweep (a Ray Tune experiment, a Hydra multirun, a folder of W&B runs) audits into
hundreds of runs; their findings one table each are unreadable. The summary gives each run
its verdict (the worst severity found, or "clean"), its updates against the baseline's (the
ratio LB001 judges), its worst finding and how many rules could not judge it, sorted so the
runs that need a look come first. Shown by the table and Markdown formats when more than
one run is audited, and plotted by :mod:`lbconvert.audit.render_sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lbconvert.audit.analyze.findings import severity_rank
from lbconvert.audit.pipeline import AuditReport, RunAudit

VERDICTS = ("error", "warning", "note", "clean")


@dataclass
class SweepRow:
    """One run's line of the summary."""

    name: str
    path: str
    format: str
    verdict: str  # error | warning | note | clean
    batch: int | None
    updates: float | None
    updates_ratio: float | None  # the run's updates / the baseline's
    worst: str  # "LB001 too-few-updates: message", or "" when clean
    findings: int
    not_judged: int


def _row(run: RunAudit, base_updates: float | None) -> SweepRow:
    h = run.history
    worst = max(run.findings, key=lambda f: severity_rank(f.severity), default=None)
    ratio = h.total_updates / base_updates if base_updates and h.total_updates else None
    return SweepRow(name=h.name or h.path, path=h.path, format=h.format,
                    verdict=worst.severity if worst else "clean", batch=h.batch_size,
                    updates=h.total_updates, updates_ratio=ratio,
                    worst=f"{worst.rule_id} {worst.rule_name}: {worst.message}" if worst else "",
                    findings=len(run.findings), not_judged=len(run.skipped))


def sweep_rows(report: AuditReport) -> list[SweepRow]:
    """Every run's summary line, worst first: by verdict, then number of findings, then the
    smallest share of the baseline's updates, then name (stable for diffs)."""
    rows = [_row(r, report.baseline_updates) for r in report.runs]
    return sorted(rows, key=lambda r: (VERDICTS.index(r.verdict), -r.findings,
                                       r.updates_ratio if r.updates_ratio is not None else 9e9,
                                       r.name))


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "?" if x is None else fmt.format(x)


def summary_markdown(report: AuditReport) -> str:
    """The summary as a Markdown table (for the markdown format and the job summary)."""
    rows = sweep_rows(report)
    counts = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    lines = [f"## Sweep summary: {len(rows)} runs", "",
             ", ".join(f"{counts[v]} {v}" for v in VERDICTS) + " (worst first)", "",
             "| verdict | run | batch | updates | × baseline updates | worst finding | "
             "not judged |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [r.verdict, f"`{r.name}`", _num(r.batch), _num(r.updates),
                 _num(r.updates_ratio, "{:.3g}"), r.worst or "—", str(r.not_judged)]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ")
                                       for c in cells) + " |")
    return "\n".join(lines) + "\n\n"


def summary_table(report: AuditReport, width: int = 120) -> str:
    """The summary as a plain-text table (rich), for the table format."""
    import os

    from rich.console import Console
    from rich.table import Table

    rows = sweep_rows(report)
    console = Console(record=True, width=width, force_terminal=False,
                      file=open(os.devnull, "w"))
    t = Table(title=f"sweep summary: {len(rows)} runs, worst first", expand=True)
    for col, kw in (("verdict", {"no_wrap": True}), ("run", {"ratio": 2}),
                    ("batch", {"justify": "right"}), ("updates", {"justify": "right"}),
                    ("× base", {"justify": "right"}), ("worst finding", {"ratio": 4}),
                    ("not judged", {"justify": "right"})):
        t.add_column(col, **kw)
    for r in rows:
        t.add_row(r.verdict, r.name, _num(r.batch), _num(r.updates),
                  _num(r.updates_ratio, "{:.3g}"), r.worst or "-", str(r.not_judged))
    console.print(t)
    return console.export_text()
