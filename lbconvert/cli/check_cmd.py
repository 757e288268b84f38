"""``lbconvert check [REPO]``: CI gate for a model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from lbconvert.errors import LbconvertError

HELP = "CI gate: convert+verify each model declared in [tool.lbconvert] and audit its runs."


def check(repo: Annotated[Optional[Path], typer.Argument(help="Repository root.")] = None) -> None:
    """Check a model repository."""
    raise LbconvertError("lbconvert check is not yet available in this version",
                         hint="run `lbconvert MODEL --target-batch N` per model")
