"""The closing panel of ``lbconvert convert``: verdict, key numbers, paths written."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console, Group
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

__all__ = ["render_summary"]

_STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "INCONCLUSIVE": "blue"}


def render_summary(result: Any, report_files: Any, console: Console) -> None:
    """Print one rich panel summarising a ``ConvertResult`` and the files written.

    The verdict is the report's (worst of verification, smoke verdict and ONNX export; see
    ``lbconvert.report.build``); ``report_files`` is the ``ReportFiles`` of ``write_report``
    or None when nothing was written (``--no-export``).
    """
    from lbconvert.report.build import overall_verdict  # the same verdict as report.json's

    export = getattr(result, "export", None)
    verdict = overall_verdict(result, export)
    level = verdict["level"]
    style = _STYLE.get(level, "white")

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in _key_numbers(result):
        grid.add_row(label, value)
    for check in verdict["checks"]:
        grid.add_row(check["stage"], Text(f"{check['level']}  ", style=_STYLE.get(
            check["level"], "white")) + Text(check["summary"]))
    paths = {}
    if export is not None:
        paths.update(export.files)
    if report_files is not None:
        paths.update(report_files.paths())
    if paths:
        grid.add_row("", "")
        for role, path in paths.items():
            grid.add_row(role, Text(str(path), style="cyan"))
    elif export is None:
        grid.add_row("files", Text("none written (--no-export)", style="dim"))
    if export is not None:
        for note in export.notes:
            grid.add_row("note", Text(note, style="dim"))
    badge = Text(f" {level} ", style=f"bold white on {style}")
    title = badge + Text(f" {verdict['headline']}")
    # Rich cuts a title wider than its panel mid-word: widen the panel to the title, and
    # when even the terminal is too narrow, the headline goes inside, wrapped at words.
    if title.cell_len + 6 <= console.width:
        content = Measurement.get(console, console.options, grid).maximum + 4
        panel = Panel(grid, title=title, title_align="left", border_style=style,
                      width=min(console.width, max(content, title.cell_len + 6)))
    else:
        panel = Panel(Group(Text(verdict["headline"], style="bold"), Text(""), grid),
                      title=badge, title_align="left", border_style=style, expand=False)
    console.print(panel)


def _key_numbers(result: Any) -> list[tuple[str, str]]:
    plan = result.plan
    rows: list[tuple[str, str]] = []
    if plan is not None:
        rows.append(("batch", f"{plan.source_batch} → {plan.target_batch} (M = {plan.ratio:g}, "
                              f"{plan.rule} rule)"))
        if plan.lr_old is not None and plan.lr_new is not None:
            rows.append(("learning rate", f"{plan.lr_old:g} → {plan.lr_new:.4g} "
                                          f"(optimizer {plan.optimizer_new})"))
        if plan.epochs_old is not None and plan.epochs_new is not None:
            updates = (f", updates {plan.updates_old:,} → {plan.updates_new:,}"
                       if plan.updates_old and plan.updates_new else "")
            rows.append(("epochs", f"{plan.epochs_old:g} → {plan.epochs_new:g}{updates}"))
        if plan.warmup_epochs:
            rows.append(("warmup", f"{plan.warmup_epochs:g} epochs"))
    surgery = getattr(result, "surgery", None)
    if surgery is not None:
        rows.append(("GhostBatchNorm", f"{surgery.converted} site(s), ghost batch "
                                       f"{surgery.ghost_batch_size}, route {surgery.route}"
                     if surgery.converted or surgery.skipped else
                     "no BatchNorm to convert: nothing for GhostBatchNorm to do"))
    smoke = getattr(result, "smoke", None)
    if smoke is not None:
        ratio = getattr(smoke.verdict, "slope_ratio", None)
        final = getattr(smoke.verdict, "final_gap", None)
        if ratio is not None:
            end = (f"; final distance {math.exp(final):.2f}× the original's"
                   if final is not None and math.isfinite(final) else "")
            rows.append(("diffusion", f"converted / original: slope {ratio:.2f}{end}"))
        ns = getattr(smoke, "noise_scale", None)
        if ns:
            from lbconvert.report.noise_scale import noise_scale_line

            line = noise_scale_line(ns, plan.target_batch if plan is not None else None)
            line = line.removeprefix("noise scale ")
            rows.insert(1 if plan is not None else 0, ("noise scale", line))
    else:
        rows.append(("smoke test", "not run"))
    export = getattr(result, "export", None)
    onnx = getattr(export, "onnx", None) if export is not None else None
    if onnx is not None and onnx.parity:
        rows.append(("ONNX parity", onnx.parity_summary()))
    return rows
