"""What the caller chooses about the export stage (:class:`ExportOptions`), typed and checked."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lbconvert.errors import LbconvertError


@dataclasses.dataclass
class ExportOptions:
    """Options of the export and report stages of :func:`lbconvert.api.convert`.

    Attributes:
        out_dir: the output folder (``--out``); files are written atomically into it.
        onnx: also write ``model.onnx`` for inference (``--onnx``), checked with
            ``onnx.checker`` and, when onnxruntime is installed, for numerical parity.
        opset: the ONNX opset (``--opset``); default: the exporter's recommendation.
        dynamic_size: spatial axes of the ONNX input are dynamic too (``--dynamic-size``), for
            fully convolutional models; the batch axis always is.
        safetensors: also write ``model.safetensors`` (``--safetensors``).
        force: replace existing outputs (``--force``); without it an existing file is refused
            before any work is done.
    """

    out_dir: str | Path
    onnx: bool = False
    opset: int | None = None
    dynamic_size: bool = False
    safetensors: bool = False
    force: bool = False

    def __post_init__(self) -> None:
        if self.out_dir is None or str(self.out_dir) == "":
            raise LbconvertError("export needs an output folder", hint="pass --out DIR")
        if self.opset is not None and not (7 <= int(self.opset) <= 30):
            raise LbconvertError(f"--opset {self.opset} is not an ONNX opset",
                                 hint="use 13 to 21, or leave it out for the default")
        self.out_dir = Path(self.out_dir)
