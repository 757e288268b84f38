"""``lbconvert convert MODEL``: the main job (load, plan, rewrite, verify, smoke, export, report)."""

from __future__ import annotations

HELP = "Convert MODEL for --target-batch (default command: `lbconvert MODEL ...`)."


def convert() -> None:
    """Placeholder until the convert command lands."""
