"""``lbconvert audit RUN_DIR...``: read finished runs and flag large-batch mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lbconvert.errors import LbconvertError

HELP = "Audit finished or running training runs for large-batch mistakes (no torch for logs)."


def audit(run_dirs: Annotated[list[Path], typer.Argument(help="Run directories.")]) -> None:
    """Audit run directories."""
    raise LbconvertError("lbconvert audit is not yet available in this version",
                         hint="use `lbconvert plan` to check a config")
