"""Rich rendering of the rewrite stage (surgery table) and the verify stage (checks table).

Takes the stage dataclasses duck-typed, so importing this module never imports torch.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

_ROUTE_STYLE = {"swap": "green", "fx": "cyan", "skipped": "yellow", "left": "dim"}


def render_surgery(result: Any, console: Console, *, max_rows: int = 60) -> None:
    """Print the surgery table: module path, old type, new type, ghost size, route, totals.

    A model with no BatchNorm at all gets one line saying so instead of an empty table."""
    if not result.rows:
        console.print("BatchNorm surgery: no BatchNorm in the model, nothing for "
                      "GhostBatchNorm to do")
        for note in getattr(result, "notes", []):
            if not note.startswith("no BatchNorm"):
                console.print(f"[dim]note: {note}[/]")
        return
    table = Table(title=f"BatchNorm surgery — route: {result.route}", title_justify="left")
    for col in ("module", "old type", "new type", "ghost", "route", "note"):
        table.add_column(col, overflow="fold")
    rows = list(result.rows)
    for row in rows[:max_rows]:
        style = _ROUTE_STYLE.get(row.route, "")
        table.add_row(row.path, row.old_type, row.new_type,
                      "" if row.ghost_batch_size is None else str(row.ghost_batch_size),
                      f"[{style}]{row.route}[/]" if style else row.route, row.reason)
    if len(rows) > max_rows:
        table.add_row(f"… {len(rows) - max_rows} more", "", "", "", "", "")
    console.print(table)
    console.print(f"{len(rows)} site(s): converted {result.converted} · skipped "
                  f"{result.skipped} · left alone {result.left_alone} · ghost batch "
                  f"{result.ghost_batch_size}")
    for note in getattr(result, "notes", []):
        console.print(f"[dim]note: {note}[/]")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def render_verification(verification: Any, console: Console) -> None:
    """Print each verification check (value vs threshold) and the verdict."""
    table = Table(title=f"Verification — batch {verification.batch}, ghost "
                  f"{verification.check_ghost_batch_size} (for the check), input "
                  f"{tuple(verification.input_shape)}", title_justify="left")
    for col in ("check", "result", "value", "threshold", "detail"):
        table.add_column(col, overflow="fold")
    for check in verification.checks:
        mark = "[green]pass[/]" if check.passed else "[bold red]FAIL[/]"
        table.add_row(check.name, mark, _fmt(check.value), _fmt(check.threshold), check.detail)
    console.print(table)
    verdict = "[green]verified[/]" if verification.passed else "[bold red]verification failed[/]"
    console.print(verdict)
