"""What the export stage wrote (:class:`ExportResult`): a leaf module, so the typed
:class:`~lbconvert.result.ConvertResult` can name it without importing the stage."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from lbconvert.export.onnx import OnnxExport


@dataclass
class ExportResult:
    """Files the export stage wrote, and how the ONNX export went.

    ``files`` maps a role (``checkpoint``, ``safetensors``, ``onnx``, ``config``,
    ``snippet``) to the path written. ``ok`` is False only when a requested ONNX export
    failed or its parity exceeded the tolerance (``lbconvert convert`` then exits 1);
    ``error`` says why with the numbers.
    """

    out_dir: str
    files: dict[str, str] = field(default_factory=dict)
    onnx: OnnxExport | None = None
    ok: bool = True
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict for report.json."""
        return {
            "out_dir": self.out_dir,
            "files": dict(self.files),
            "onnx": self.onnx.to_dict() if self.onnx is not None else None,
            "ok": self.ok,
            "error": self.error,
            "notes": list(self.notes),
        }
