"""Paths of the report files written (:class:`ReportFiles`): a leaf module, so the typed
:class:`~lbconvert.result.ConvertResult` can name it without importing the stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from lbconvert._json import dataclass_dict


@dataclass
class ReportFiles:
    """Paths of the report files written (``json``, ``md``, ``html``)."""

    json: str
    md: str
    html: str
    plots: list[str] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return dataclass_dict(self)

    def paths(self) -> dict[str, str]:
        """Role → path, for summaries."""
        return {"report.json": self.json, "report.md": self.md, "report.html": self.html}
