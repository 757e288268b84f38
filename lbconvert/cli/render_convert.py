"""Renders the convert pipeline stage by stage as results arrive (rich, on the terminal)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rich.console import Console

#: Width of the output when it is not a terminal (CI logs, files): Rich's default of 80
#: columns folds the smoke and plan tables into unreadable stacks there. COLUMNS still wins.
LOG_WIDTH = 160


def make_console(**kwargs: Any) -> Console:
    """A Rich console for the command's output: the terminal's width on a terminal,
    ``$COLUMNS`` when set, else :data:`LOG_WIDTH` (CI logs are read in wide windows)."""
    console = Console(**kwargs)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console = Console(width=LOG_WIDTH, **kwargs)
    return console


class StageRenderer:
    """``on_stage`` callback for :func:`lbconvert.api.convert` that prints each stage."""

    def __init__(self, console: Console, *, config_path: Path | None = None):
        self.console = console
        self.config_path = config_path
        self.config = None

    def __call__(self, stage: str, value: Any) -> None:
        getattr(self, f"_{stage}", lambda v: None)(value)

    def _config(self, config: Any) -> None:
        self.config = config

    def _load(self, loaded: Any) -> None:
        if loaded is not None:
            extra = f" ← weights {loaded.weights}" if loaded.weights else ""
            args = ", ".join(f"{k}={v!r}" for k, v in getattr(loaded, "kwargs", {}).items())
            self.console.print(f"[bold]model[/] {loaded.name} from {loaded.spec} "
                               f"({loaded.source}: {loaded.factory}"
                               f"{'(' + args + ')' if args else ''}){extra}", highlight=False)
            for note in loaded.notes:
                if note.startswith("chose"):
                    self.console.print(f"[dim]note: {note}[/]", highlight=False)

    def _plan(self, plan: Any) -> None:
        from lbconvert.cli.render_plan import render_plan

        render_plan(plan, self.config, self.console)

    def _rewrite(self, surgery: Any) -> None:
        from lbconvert.cli.render_surgery import render_surgery

        render_surgery(surgery, self.console)

    def _verify(self, verification: Any) -> None:
        from lbconvert.cli.render_surgery import render_verification

        render_verification(verification, self.console)

    def _smoke(self, smoke: Any) -> None:
        from lbconvert.cli.render_smoke import render_smoke

        render_smoke(smoke, self.console)

    def finish(self, result: Any, *, json_output: bool = False) -> None:
        """Print the closing summary panel (or the report JSON with ``--format json``)."""
        if json_output:
            from lbconvert.report.build import build_report

            print(json.dumps(build_report(result, result.export), indent=2))
            return
        for note in result.notes:
            self.console.print(f"[dim]note: {note}[/]")
        from lbconvert.cli.render_summary import render_summary

        render_summary(result, result.report_files, self.console)
