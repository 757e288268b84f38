"""``lbconvert plan``: the large-batch schedule for a config, no torch."""

from __future__ import annotations

HELP = "Plan the large-batch schedule for a config (pure arithmetic, no torch import)."


def plan() -> None:
    """Placeholder until the plan command lands."""
