"""One value a plan changed, with the reason: the rows of the plan table and report."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Change:
    """One value the plan changed: ``field`` old → new, and why (rule and paper)."""

    field: str
    old: Any
    new: Any
    reason: str
