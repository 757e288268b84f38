"""ONNX export of the converted model for inference, with a checker pass and numerical parity.

GhostBatchNorm subclasses BatchNorm and is plain BatchNorm in eval mode (Hoffer et al. 2017,
section 4: inference uses the running statistics), so the exported graph has ordinary
``BatchNormalization`` nodes — or none at all when the exporter folds them into the
preceding convolution. The batch axis is dynamic and named ``batch``; with
``dynamic_size`` (fully convolutional models) the spatial axes are dynamic too (``height``,
``width``). Parity is checked at batch 1 and 7 (proving the batch axis is dynamic) and, with
``dynamic_size``, at a second spatial size (160 px).

Parity rule, per output tensor: ``max|ONNX − PyTorch| ≤ atol + rtol·max|PyTorch|`` with
``atol = PARITY_ATOL`` and ``rtol = PARITY_RTOL`` — the ``atol + rtol·|ref|`` form of
``torch.testing.assert_close`` with ``|ref|`` taken at the output's scale, so that an untrained
ResNet-101 whose logits reach 10⁵ is judged by its float32 rounding (relative 4e-7), not by an
absolute 1e-4. Both the absolute and the relative error (``max|Δ| / max|ref|``) are reported.

Exporters are tried in the order torch recommends for its version: the ``torch.export``-based
exporter (``dynamo=True``, the default since torch 2.9) first, then the TorchScript exporter.
The result says which one produced the file and why the first one failed.

torch, onnx and onnxruntime are imported inside the functions: the CLI imports this module
only when ``--onnx`` is given.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lbconvert._text import clip
from lbconvert.atomic import check_writable

if TYPE_CHECKING:  # pragma: no cover
    import torch
    import torch.nn as nn

__all__ = ["PARITY_ATOL", "PARITY_RTOL", "PARITY_TOLERANCE", "PARITY_BATCH_SIZES",
           "DYNAMIC_SIZE_PARITY", "OnnxExport", "export_onnx", "recommended_exporters"]

PARITY_ATOL = 1e-4
PARITY_RTOL = 1e-4
PARITY_TOLERANCE = PARITY_ATOL  # the absolute part; the bound grows with the output's scale
# Two different sizes, one of them 1: the second proves the batch axis really is dynamic.
PARITY_BATCH_SIZES = (1, 7)
#: Spatial size of the extra parity case with ``dynamic_size`` (another one if the input has it).
DYNAMIC_SIZE_PARITY = 160
_SPATIAL_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
EXPORTERS = ("dynamo", "torchscript")
# Past 2 GiB a single protobuf cannot hold the weights; keep a margin.
_EXTERNAL_DATA_BYTES = 1_800_000_000
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class OnnxExport:
    """What the ONNX export did.

    ``parity`` maps a case (``"batch 1"``, ``"batch 7"``, ``"batch 2 at 3×160×160"``) → max
    |ONNX Runtime − PyTorch| over every output element, ``relative`` the same divided by the
    output's max |PyTorch|, and ``bound`` the allowed ``atol + rtol·max|PyTorch|`` (all empty
    when onnxruntime is not installed). ``ok`` is False when the export failed, the checker
    rejected the file, or a case exceeds its bound; ``error`` then says why, naming the
    unsupported operator when that was the cause.
    """

    path: str | None = None
    exporter: str | None = None  # dynamo | torchscript
    opset: int | None = None
    requested_opset: int | None = None
    checker_ok: bool | None = None
    checker_error: str | None = None
    runtime: str | None = None  # "onnxruntime <version>" when parity was run
    parity: dict[str, float] = field(default_factory=dict)
    relative: dict[str, float] = field(default_factory=dict)
    bound: dict[str, float] = field(default_factory=dict)
    max_abs_output: dict[str, float] = field(default_factory=dict)
    tolerance: float = PARITY_ATOL
    rtol: float = PARITY_RTOL
    dynamic_batch: bool | None = None
    dynamic_size: bool = False
    input_axes: list[str | int] = field(default_factory=list)
    op_types: list[str] = field(default_factory=list)
    unsupported_op: str | None = None
    fallback_reason: str | None = None
    seconds: float = 0.0
    ok: bool = False
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def parity_ok(self) -> bool | None:
        """True/False when parity ran, None when it could not (no onnxruntime)."""
        if not self.parity:
            return None
        return all(diff <= self.bound.get(case, self.tolerance)
                   for case, diff in self.parity.items())

    @property
    def rule(self) -> str:
        """The parity rule in words, with its numbers."""
        return (f"max|ONNX − PyTorch| ≤ atol + rtol·max|PyTorch| per output "
                f"(atol {self.tolerance:g}, rtol {self.rtol:g})")

    def parity_summary(self) -> str:
        """One line: each case's absolute and relative error, then the rule."""
        if not self.parity:
            return "not checked"
        cases = ", ".join(f"{case}: |Δ| {d:.2g} (rel {self.relative.get(case, 0.0):.2g})"
                          for case, d in self.parity.items())
        return f"{cases}; {self.rule}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (batch sizes become string keys, as JSON requires)."""
        return {
            "path": self.path,
            "exporter": self.exporter,
            "opset": self.opset,
            "requested_opset": self.requested_opset,
            "checker_ok": self.checker_ok,
            "checker_error": self.checker_error,
            "runtime": self.runtime,
            "parity": {str(k): float(v) for k, v in self.parity.items()},
            "relative": {str(k): float(v) for k, v in self.relative.items()},
            "bound": {str(k): float(v) for k, v in self.bound.items()},
            "max_abs_output": {str(k): float(v) for k, v in self.max_abs_output.items()},
            "parity_ok": self.parity_ok,
            "parity_summary": self.parity_summary(),
            "tolerance": self.tolerance,
            "rtol": self.rtol,
            "rule": self.rule,
            "dynamic_batch": self.dynamic_batch,
            "dynamic_size": self.dynamic_size,
            "input_axes": list(self.input_axes),
            "op_types": list(self.op_types),
            "unsupported_op": self.unsupported_op,
            "fallback_reason": self.fallback_reason,
            "seconds": round(self.seconds, 3),
            "ok": self.ok,
            "error": self.error,
            "notes": list(self.notes),
        }


def export_onnx(
    model: nn.Module,
    input_shape: tuple[int, ...] | list[int] | None,
    path: Path | str,
    *,
    opset: int | None = None,
    force: bool = False,
    exporters: tuple[str, ...] | None = None,
    batch_sizes: tuple[int, ...] = PARITY_BATCH_SIZES,
    tolerance: float = PARITY_ATOL,
    rtol: float = PARITY_RTOL,
    dynamic_size: bool = False,
    seed: int = 0,
) -> OnnxExport:
    """Export ``model`` (in eval mode, on CPU, a copy) to ``path`` and check it.

    ``input_shape`` is one sample's shape (no batch axis). ``opset`` None lets the exporter
    pick its default; the opset actually written is read back from the file. Steps:
    export (first exporter in ``exporters`` that succeeds; default
    :func:`recommended_exporters`) → ``onnx.checker.check_model``
    with ``full_check=True`` → when onnxruntime imports, run ONNX Runtime and PyTorch on the
    same seeded random inputs at each of ``batch_sizes`` (and, with ``dynamic_size``, at a
    second spatial size) and judge each by the module docstring's rule (``tolerance`` is
    the atol, ``rtol`` the relative part).
    The file is written atomically (into a temporary directory beside ``path``, then
    renamed), and only when the export itself succeeded; a failed checker or parity still
    leaves the file for inspection, with ``ok=False``.

    Errors the user can fix (no input shape, existing file) raise ``LbconvertError``;
    export failures are returned in ``error`` so the caller can still write the checkpoint.
    """
    import copy

    import torch

    path = check_writable(path, force=force)
    exporters = tuple(exporters) if exporters else recommended_exporters()
    result = OnnxExport(requested_opset=opset, tolerance=tolerance, rtol=rtol,
                        dynamic_size=dynamic_size)
    if not input_shape:
        result.error = (
            "ONNX export needs the per-sample input shape, which neither the model nor the "
            "config gives: set it in the config (e.g. input_size: [3, 224, 224])"
        )
        return result

    start = time.perf_counter()
    model = copy.deepcopy(model).cpu().eval()
    gen = torch.Generator().manual_seed(seed)
    # Batch 2 for tracing: a traced batch of 1 would be specialized (torch.export's 0/1 rule).
    example = torch.randn(2, *input_shape, generator=gen)
    try:
        with torch.no_grad():
            n_out = len(_flatten(model(example)))
    except Exception as exc:  # user model code: report, do not crash the export stage
        result.error = (f"ONNX export skipped: the model rejects an input of shape "
                        f"{tuple(example.shape)}: {type(exc).__name__}: {_first_line(exc)}")
        result.seconds = time.perf_counter() - start
        return result
    if n_out == 0:
        result.error = "ONNX export skipped: the model returns no tensor"
        return result
    output_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    axes = _input_axes(len(input_shape), dynamic_size)
    external = _param_bytes(model) > _EXTERNAL_DATA_BYTES

    path.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent))
    try:
        staged = workdir / path.name
        failures: list[tuple[str, BaseException]] = []
        for name in exporters:
            try:
                _EXPORT_FNS[name](model, example, staged, opset, output_names, external, axes)
            except Exception as exc:  # exporters raise many types; each is reported
                failures.append((name, exc))
                for leftover in workdir.iterdir():
                    leftover.unlink()
                continue
            result.exporter = name
            break
        if result.exporter is None:
            result.unsupported_op = _unsupported_op(failures)
            result.error = _export_error(failures, result.unsupported_op)
            result.seconds = time.perf_counter() - start
            return result
        if failures:
            name, exc = failures[0]
            result.fallback_reason = f"{name} exporter failed: {_first_line(exc)}"

        _inspect(staged, result)
        _check(staged, result)
        _parity(model, staged, _parity_cases(input_shape, batch_sizes, dynamic_size), gen,
                result)
        for produced in sorted(workdir.iterdir()):  # the model and any external data file
            target = path if produced.name == path.name else path.parent / produced.name
            os.replace(produced, target)
        result.path = str(path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    result.seconds = time.perf_counter() - start
    result.ok = bool(result.checker_ok) and result.parity_ok is not False
    if result.checker_ok is False:
        result.error = f"onnx.checker rejected {path.name}: {result.checker_error}"
    elif result.parity_ok is False:
        worst = max(result.parity.values())
        result.error = (
            f"ONNX Runtime output differs from PyTorch by up to {worst:.3g}: "
            + result.parity_summary()
        )
    return result


def recommended_exporters() -> tuple[str, ...]:
    """Exporters in the order torch recommends for the installed version.

    torch ≥ 2.9 makes the ``torch.export``-based exporter the default (``dynamo=True``);
    earlier releases default to the TorchScript exporter, whose dynamo alternative was
    still experimental. The other one is kept as the fallback.
    """
    import torch

    major, minor = (int(p) for p in re.findall(r"\d+", torch.__version__)[:2])
    return EXPORTERS if (major, minor) >= (2, 9) else EXPORTERS[::-1]


def _input_axes(spatial_dims: int, dynamic_size: bool) -> dict[int, str]:
    """Named dynamic axes of the input: ``batch``, plus the spatial ones with dynamic_size."""
    axes = {0: "batch"}
    if dynamic_size:
        names = _SPATIAL_NAMES.get(spatial_dims - 1, ())
        axes.update({2 + i: name for i, name in enumerate(names)})
    return axes


def _parity_cases(input_shape, batch_sizes, dynamic_size: bool) -> list[tuple[str, tuple]]:
    """``(label, full input shape)`` for every parity run."""
    shape = tuple(input_shape)
    cases = [(f"batch {b}", (b, *shape)) for b in batch_sizes]
    if dynamic_size and len(shape) >= 2:
        size = DYNAMIC_SIZE_PARITY if DYNAMIC_SIZE_PARITY not in shape[1:] else \
            DYNAMIC_SIZE_PARITY + 32
        other = (shape[0], *([size] * (len(shape) - 1)))
        cases.append((f"batch 2 at {'×'.join(map(str, other))}", (2, *other)))
    return cases


def _export_dynamo(model, example, dest: Path, opset, output_names, external: bool,
                   axes: dict[int, str]) -> None:
    import torch

    program = torch.onnx.export(
        model,
        (example,),
        None,
        dynamo=True,
        opset_version=opset,
        dynamic_shapes=({i: torch.export.Dim(name) for i, name in axes.items()},),
        input_names=["input"],
        output_names=output_names,
        verbose=False,
    )
    program.save(str(dest), external_data=external)


def _export_torchscript(model, example, dest: Path, opset, output_names, external: bool,
                        axes: dict[int, str]) -> None:
    import torch

    axes = {"input": dict(axes), **{name: {0: "batch"} for name in output_names}}
    # The legacy exporter prints the TorchScript graph on failure and warns that it is
    # deprecated; both are reported through OnnxExport instead.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            str(dest),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=output_names,
            dynamic_axes=axes,
            do_constant_folding=True,
        )


_EXPORT_FNS = {"dynamo": _export_dynamo, "torchscript": _export_torchscript}


def _inspect(path: Path, result: OnnxExport) -> None:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    result.opset = next(
        (imp.version for imp in proto.opset_import if imp.domain in ("", "ai.onnx")), None
    )
    result.op_types = sorted({node.op_type for node in proto.graph.node})
    dims = proto.graph.input[0].type.tensor_type.shape.dim if proto.graph.input else []
    result.dynamic_batch = bool(dims) and not dims[0].HasField("dim_value")
    result.input_axes = [d.dim_param if d.dim_param else d.dim_value for d in dims]
    if result.requested_opset is not None and result.opset != result.requested_opset:
        result.notes.append(
            f"asked for opset {result.requested_opset}, the exporter wrote {result.opset}"
        )


def _check(path: Path, result: OnnxExport) -> None:
    import onnx

    try:
        # A path (not a loaded proto) lets the checker handle models with external data.
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, ...
        result.checker_ok = False
        result.checker_error = _first_line(exc)
    else:
        result.checker_ok = True


def _parity(model, path: Path, cases: list[tuple[str, tuple]], gen, result: OnnxExport) -> None:
    import numpy as np
    import torch

    try:
        import onnxruntime as ort
    except ImportError:
        result.notes.append(
            "onnxruntime is not installed: numerical parity not checked "
            "(pip install 'lbconvert[onnxruntime]')"
        )
        return
    result.runtime = f"onnxruntime {ort.__version__}"
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT refuses some graphs the checker accepts
        result.notes.append(f"onnxruntime could not load the model: {_first_line(exc)}")
        result.parity = {case: float("inf") for case, _ in cases}
        return
    input_name = session.get_inputs()[0].name
    for batch, shape in cases:
        x = torch.randn(*shape, generator=gen)
        with torch.no_grad():
            expected = [t.detach().cpu().numpy() for t in _flatten(model(x))]
        try:
            got = session.run(None, {input_name: x.numpy()})
        except Exception as exc:  # e.g. a batch axis that was fixed after all
            result.notes.append(f"onnxruntime failed at {batch}: {_first_line(exc)}")
            result.parity[batch] = float("inf")
            continue
        if len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected)):
            result.notes.append(
                f"{batch}: output shapes differ (onnx {[g.shape for g in got]}, "
                f"torch {[e.shape for e in expected]})"
            )
            result.parity[batch] = float("inf")
            continue
        pairs = [(g.astype(np.float64), e.astype(np.float64)) for g, e in zip(got, expected)
                 if e.size]
        diffs = [float(np.max(np.abs(g - e))) for g, e in pairs]
        scales = [float(np.max(np.abs(e))) for _, e in pairs]
        bounds = [result.tolerance + result.rtol * s for s in scales]
        # The case's worst output relative to its own bound decides; report that output.
        worst = max(range(len(pairs)), key=lambda i: diffs[i] / bounds[i], default=None)
        if worst is None:
            result.parity[batch], result.bound[batch], result.relative[batch] = 0.0, 1.0, 0.0
            result.max_abs_output[batch] = 0.0
            continue
        result.parity[batch] = diffs[worst]
        result.bound[batch] = bounds[worst]
        result.max_abs_output[batch] = scales[worst]
        result.relative[batch] = diffs[worst] / scales[worst] if scales[worst] else \
            (0.0 if diffs[worst] == 0 else float("inf"))


def _flatten(out: Any) -> list[torch.Tensor]:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [t for v in out.values() for t in _flatten(v)]
    if isinstance(out, (list, tuple)):
        return [t for v in out for t in _flatten(v)]
    return []


def _param_bytes(model) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    return sum(t.numel() * t.element_size() for t in tensors)


def _first_line(exc: BaseException) -> str:
    text = _ANSI.sub("", str(exc)).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # The dynamo exporter puts the cause under "Exception summary"; prefer it.
    for ln in lines:
        if "No ONNX function found" in ln or "not supported" in ln or "Unsupported" in ln:
            return clip(ln, 400)
    return clip(lines[0] if lines else type(exc).__name__, 400)


_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([^']+)'"),
    re.compile(r"\b([A-Za-z_]\w*::[A-Za-z_][\w.]*)"),
)


def _unsupported_op(failures: list[tuple[str, BaseException]]) -> str | None:
    for _, exc in failures:
        text = _ANSI.sub("", str(exc))
        for pattern in _OP_PATTERNS:
            match = pattern.search(text)
            if match:
                return match.group(1).replace(".", "::", 1) if "::" not in match.group(1) \
                    else match.group(1)
    return None


def _export_error(failures: list[tuple[str, BaseException]], op: str | None) -> str:
    tried = "; ".join(f"{name}: {_first_line(exc)}" for name, exc in failures)
    if op:
        return (
            f"ONNX export failed: operator {op} is not supported by the ONNX exporters "
            f"({tried}). The checkpoint is still written; replace the operator or register an "
            "ONNX translation for it"
        )
    return f"ONNX export failed ({tried}). The checkpoint is still written"
