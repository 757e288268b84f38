"""``lbconvert check [REPO]``: CI gate for a model repository (see :mod:`lbconvert.check`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import lbconvert.cli.options as o
from lbconvert.cli.audit_cmd import emit, parse_also, resolve_format

# Click's plain help (cli/__init__.py) prints the table name as written.
HELP = "CI gate: convert+verify each model declared in [tool.lbconvert] and audit its runs."


def check(
    repo: Annotated[Optional[Path], typer.Argument(help="Repository root (default: .).")] = None,
    fmt: o.ReportFormatOpt = None,
    output: o.OutputOpt = None,
    also: o.AlsoOpt = None,
    fail_on: Annotated[Optional[str], typer.Option(
        "--fail-on", help="error, warning, note or never (default: the repo's fail-on, "
        "else error).")] = None,
    smoke: Annotated[bool, typer.Option("--smoke", help="Also run the smoke training.")] = False,
    runs_only: Annotated[bool, typer.Option(
        "--runs-only",
        help="Audit the declared runs only (no model conversion, no checkpoint loading, "
        "no torch).")] = False,
    logs_only: Annotated[bool, typer.Option(
        "--logs-only", help="Ignore checkpoint files in run directories.")] = False,
) -> None:
    """Check a model repository; exit 0 clean, 1 failures/findings, 2 input error."""
    fmt = resolve_format(fmt, output)
    extra = parse_also(also)
    from lbconvert.check import run_check

    report = run_check(repo or Path("."), smoke=smoke, fail_on=fail_on,
                       logs_only=logs_only or runs_only, models=not runs_only)
    emit(report, fmt, output, also=extra)
    raise typer.Exit(report.exit_code)
