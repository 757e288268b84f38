"""ONNX parity rule (atol + rtol·max|ref|), named batch axis, --dynamic-size at 160 px."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn as nn

from lbconvert.export.onnx import PARITY_ATOL, PARITY_RTOL, export_onnx

pytestmark = pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None,
                                reason="onnxruntime not installed")


class _Huge(nn.Module):
    """Logits of magnitude ~1e6 (an untrained deep net's scale): float32 rounding alone
    makes ONNX Runtime and PyTorch differ by more than an absolute 1e-4."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(256, 10)
        with torch.no_grad():
            self.fc.weight.normal_(0, 1e5)

    def forward(self, x):
        return self.fc(x)


def _fully_conv():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_parity_is_relative_to_the_output_scale(tmp_path):
    import onnxruntime as ort

    model = _Huge().eval()
    o = export_onnx(model, (256,), tmp_path / "huge.onnx")
    assert o.ok, o.error
    # Independent computation of both errors at batch 7 from the written file.
    x = torch.randn(7, 256)
    session = ort.InferenceSession(o.path, providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x.numpy()})[0].astype(np.float64)
    with torch.no_grad():
        ref = model(x).double().numpy()
    abs_err, scale = float(np.abs(got - ref).max()), float(np.abs(ref).max())
    assert scale > 1e5
    assert abs_err <= PARITY_ATOL + PARITY_RTOL * scale
    # The exporter's own numbers are of the same kind: relative = abs / scale, both reported.
    for case in ("batch 1", "batch 7"):
        assert o.relative[case] == pytest.approx(o.parity[case] / o.max_abs_output[case])
        assert o.bound[case] == pytest.approx(PARITY_ATOL + PARITY_RTOL * o.max_abs_output[case])
        assert o.relative[case] < 1e-5
    d = o.to_dict()
    assert "atol + rtol·max|PyTorch|" in d["rule"] and "(rel " in d["parity_summary"]


def test_batch_axis_is_named_and_runs_at_1_and_7(tmp_path):
    import onnx
    import onnxruntime as ort

    o = export_onnx(_fully_conv().eval(), (3, 32, 32), tmp_path / "m.onnx")
    assert o.ok, o.error
    assert set(o.parity) == {"batch 1", "batch 7"}
    proto = onnx.load(o.path)
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*proto.graph.input, *proto.graph.output)]
    assert dims == [["batch", 3, 32, 32], ["batch", 4]]
    session = ort.InferenceSession(o.path, providers=["CPUExecutionProvider"])
    for batch in (1, 7):
        assert session.run(None, {"input": np.zeros((batch, 3, 32, 32), np.float32)})[0].shape \
            == (batch, 4)
    with pytest.raises(Exception):  # fixed spatial size without --dynamic-size
        session.run(None, {"input": np.zeros((1, 3, 160, 160), np.float32)})


def test_dynamic_size_runs_at_160px(tmp_path):
    import onnxruntime as ort

    model = _fully_conv().eval()
    o = export_onnx(model, (3, 32, 32), tmp_path / "m.onnx", dynamic_size=True)
    assert o.ok, o.error
    assert o.input_axes == ["batch", 3, "height", "width"]
    assert "batch 2 at 3×160×160" in o.parity
    session = ort.InferenceSession(o.path, providers=["CPUExecutionProvider"])
    x = torch.randn(1, 3, 160, 160)
    with torch.no_grad():
        ref = model(x).numpy()
    got = session.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - ref).max() <= PARITY_ATOL + PARITY_RTOL * np.abs(ref).max()
