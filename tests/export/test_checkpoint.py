"""Export stage: checkpoint, safetensors, config, snippet, ONNX (checker + parity), refusals."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn

from lbconvert.errors import LbconvertError
from lbconvert.export.checkpoint import export, load_checkpoint, train_snippet
from lbconvert.export.onnx import PARITY_TOLERANCE, export_onnx
from lbconvert.nn.ghost_batchnorm import GhostBatchNorm
from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_MODEL
from tests.helpers import make_result, trained_looking

sys.path.insert(0, str(EXAMPLE_MODEL.parent))
from cifar_resnet import CifarResNet  # noqa: E402

HAS_ORT = importlib.util.find_spec("onnxruntime") is not None
HAS_SAFETENSORS = importlib.util.find_spec("safetensors") is not None


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One full export with ONNX and safetensors (the dynamo exporter takes seconds)."""
    out = tmp_path_factory.mktemp("export")
    result = make_result()
    res = export(result, out, onnx=True, safetensors=True)
    return result, res, out


def test_every_file_written(exported):
    result, res, out = exported
    expected = {"checkpoint": "model.pt", "snippet": "train_snippet.py", "onnx": "model.onnx",
                "config": "cifar_resnet.yaml"}
    if HAS_SAFETENSORS:
        expected["safetensors"] = "model.safetensors"
    assert {k: os.path.basename(v) for k, v in res.files.items()} == expected
    assert all(os.path.getsize(p) > 0 for p in res.files.values())
    assert res.ok and res.error is None
    # No temporary files or directories left behind.
    assert sorted(os.listdir(out)) == sorted(expected.values())
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["onnx"]["ok"] is True and d["files"] == res.files


def test_checkpoint_loads_strict_into_original_class(exported):
    result, res, _ = exported
    blob = torch.load(res.files["checkpoint"], weights_only=True)
    fresh = CifarResNet(depth=20, num_classes=10)
    fresh.load_state_dict(blob["state_dict"], strict=True)
    fresh.eval()
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = result.original.eval()(x)
        got = fresh(x)
    assert torch.equal(got, expected)
    assert int(blob["state_dict"]["bn1.num_batches_tracked"]) == 17


def test_checkpoint_metadata(exported):
    result, res, _ = exported
    state, meta = load_checkpoint(res.files["checkpoint"])
    assert set(state) == set(result.original.state_dict())
    assert meta["format"] == "lbconvert-checkpoint/1"
    import lbconvert

    assert meta["lbconvert_version"] == lbconvert.__version__
    assert meta["input_shape"] == [3, 32, 32]
    assert meta["model_spec"] == str(EXAMPLE_MODEL)
    assert meta["model_class"].endswith("CifarResNet")
    plan = result.plan.to_dict()
    assert meta["plan"]["target_batch"] == plan["target_batch"] == 8192
    assert meta["plan"]["lr_new"] == pytest.approx(plan["lr_new"])
    assert [c["field"] for c in meta["plan"]["changes"]] == [c["field"] for c in plan["changes"]]


@pytest.mark.skipif(not HAS_SAFETENSORS, reason="safetensors not installed")
def test_safetensors_round_trip(exported):
    from safetensors import safe_open
    from safetensors.torch import load_file

    result, res, _ = exported
    tensors = load_file(res.files["safetensors"])
    state = result.model.state_dict()
    assert set(tensors) == set(state)
    for key, value in state.items():
        assert torch.equal(tensors[key], value), key
    with safe_open(res.files["safetensors"], framework="pt") as f:
        meta = f.metadata()
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items())
    assert json.loads(meta["plan"])["target_batch"] == 8192
    assert json.loads(meta["input_shape"]) == [3, 32, 32]


def test_config_and_snippet(exported):
    result, res, _ = exported
    import yaml

    doc = yaml.safe_load(open(res.files["config"]))
    assert doc["train"]["batch_size"] == 8192
    assert doc["optimizer"]["lr"] == pytest.approx(result.plan.lr_new)
    source = open(res.files["snippet"]).read()
    compile(source, "train_snippet.py", "exec")
    for needed in ("lbconvert.convert(", "target_batch=8192", ".make_optimizer(",
                   ".make_scheduler(", str(EXAMPLE_CONFIG)):
        assert needed in source


def test_snippet_with_accumulation_and_no_config_file():
    result = make_result()
    result.plan.grad_accum = 4
    result.plan.per_device_batch = 2048
    result.config.path = None
    source = train_snippet(result)
    compile(source, "train_snippet.py", "exec")
    assert "ACCUM = 4" in source and "2048 samples" in source
    assert "path/to/train_config.yaml" in source


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_onnx_checker_and_parity(exported):
    import onnx
    import onnxruntime as ort

    result, res, _ = exported
    o = res.onnx
    assert o.exporter in ("dynamo", "torchscript") and o.checker_ok
    assert o.opset is not None and o.opset >= 17
    assert o.dynamic_batch is True
    assert set(o.parity) == {"batch 1", "batch 7"}
    assert all(0 <= d <= o.bound[case] for case, d in o.parity.items())
    assert o.input_axes == ["batch", 3, 32, 32]  # a named batch axis, fixed spatial size
    # Independent re-check: the checker on the written file, and ORT at a third batch size.
    onnx.checker.check_model(res.files["onnx"], full_check=True)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(11))
    session = ort.InferenceSession(res.files["onnx"], providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = result.model.eval()(x).numpy()
    assert got.shape == (3, 10)
    assert float(np.max(np.abs(got - expected))) <= PARITY_TOLERANCE
    # GhostBatchNorm must leave no trace of its training-time chunking in the graph.
    assert not {"Loop", "If", "Split", "SplitToSequence"} & set(o.op_types)


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_ghost_batchnorm_exports_as_batchnormalization(tmp_path):
    gbn = GhostBatchNorm(3, ghost_batch_size=2)
    trained_looking(nn.Sequential(nn.BatchNorm2d(3)))  # keep the helper exercised on BN
    with torch.no_grad():
        gbn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        gbn.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    model = nn.Sequential(gbn)
    o = export_onnx(model, (3, 4, 4), tmp_path / "gbn.onnx", exporters=("torchscript",))
    assert o.ok, o.error
    assert o.exporter == "torchscript"
    assert "BatchNormalization" in o.op_types
    assert all(d <= 1e-6 for d in o.parity.values())


def test_refuses_to_overwrite_without_force(exported, tmp_path):
    result, _, _ = exported
    out = tmp_path / "out"
    first = export(result, out)
    before = {p: open(p, "rb").read() for p in first.files.values()}
    with pytest.raises(LbconvertError) as err:
        export(result, out)
    message = str(err.value)
    assert "model.pt" in message and "--force" in message
    assert {p: open(p, "rb").read() for p in first.files.values()} == before
    # A planned file that exists (even one not written before) also blocks the whole export.
    with pytest.raises(LbconvertError, match="model.pt"):
        export(result, out, safetensors=True)
    assert not (out / "model.safetensors").exists()
    again = export(result, out, force=True)
    assert again.files == first.files


def test_failed_checkpoint_write_leaves_no_partial_file(exported, tmp_path, monkeypatch):
    result, _, _ = exported

    def broken_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="No space"):
        export(result, out)
    assert os.listdir(out) == []


def test_config_without_file_is_skipped_with_note(tmp_path):
    result = make_result()
    result.config.path = None
    res = export(result, tmp_path, write_config=lambda *a, **k: pytest.fail("called"))
    assert "config" not in res.files
    assert any("no config written" in n for n in res.notes)


def test_custom_config_writer_receives_destination(tmp_path):
    result = make_result()
    calls = []

    def writer(cfg, plan, dest, *, force):
        calls.append((cfg, plan, dest, force))
        dest.write_text("batch_size: 8192\n")
        return dest

    res = export(result, tmp_path, write_config=writer, force=True)
    assert calls and calls[0][0] is result.config and calls[0][1] is result.plan
    assert calls[0][3] is True
    assert res.files["config"] == str(tmp_path / "cifar_resnet.yaml")


class _Twice(nn.Module):
    def forward(self, x):
        return torch.ops.lbtest_export.twice(x)


@torch.library.custom_op("lbtest_export::twice", mutates_args=())
def _twice(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_twice.register_fake
def _(x):
    return torch.empty_like(x)


def test_unsupported_op_is_named_and_checkpoint_still_written(tmp_path):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), _Twice())
    result = make_result(model)
    res = export(result, tmp_path, onnx=True)
    assert res.ok is False
    assert res.onnx.unsupported_op == "lbtest_export::twice"
    assert "lbtest_export::twice" in res.error and "checkpoint is still written" in res.error
    assert os.path.exists(res.files["checkpoint"]) and "onnx" not in res.files
    assert not (tmp_path / "model.onnx").exists()
    assert sorted(os.listdir(tmp_path)) == ["cifar_resnet.yaml", "model.pt", "train_snippet.py"]


class _Noisy(nn.Module):
    """Eval output depends on a random draw: ONNX Runtime cannot reproduce it."""

    def forward(self, x):
        return x + torch.randn_like(x)


@pytest.mark.skipif(not HAS_ORT, reason="onnxruntime not installed")
def test_parity_failure_reports_numbers(tmp_path):
    o = export_onnx(_Noisy(), (2, 3), tmp_path / "noisy.onnx", exporters=("torchscript",))
    assert o.checker_ok is True
    assert o.ok is False and o.parity_ok is False
    assert all(d > PARITY_TOLERANCE for d in o.parity.values())
    assert "atol + rtol·max|PyTorch|" in o.error and "batch 1: |Δ|" in o.error
    assert (tmp_path / "noisy.onnx").exists()  # kept for inspection


def test_missing_input_shape_is_an_onnx_error_not_a_crash(tmp_path):
    result = make_result()
    result.input_shape = None
    res = export(result, tmp_path, onnx=True)
    assert res.ok is False and "input shape" in res.error
    assert os.path.exists(res.files["checkpoint"])


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(LbconvertError, match="is a file"):
        export(make_result(), f)


def test_failed_onnx_with_force_removes_a_stale_model_onnx(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"from an earlier run")
    result = make_result()
    result.input_shape = None  # makes the ONNX export fail fast
    res = export(result, tmp_path, onnx=True, force=True)
    assert res.ok is False
    assert not (tmp_path / "model.onnx").exists()
    assert any("earlier run" in n for n in res.notes)


def test_check_outputs_refuses_early(tmp_path):
    from lbconvert.export.checkpoint import check_outputs, output_paths

    paths = output_paths(tmp_path, config_path=str(EXAMPLE_CONFIG), onnx=True)
    assert {p.name for p in paths.values()} == {
        "model.pt", "train_snippet.py", "model.onnx", "cifar_resnet.yaml", "report.json",
        "report.md", "report.html"}
    check_outputs(tmp_path, config_path=str(EXAMPLE_CONFIG), onnx=True)  # empty folder: fine
    (tmp_path / "report.md").write_text("old")
    with pytest.raises(LbconvertError, match=r"report\.md.*--force"):
        check_outputs(tmp_path, config_path=str(EXAMPLE_CONFIG))
    check_outputs(tmp_path, config_path=str(EXAMPLE_CONFIG), force=True)
    assert output_paths(tmp_path, config_path="x/report.json")["config"].name == \
        "config-report.json"


def test_recommended_exporter_order_follows_torch_version(monkeypatch):
    from lbconvert.export.onnx import recommended_exporters

    for version, first in (("2.14.1+cu130", "dynamo"), ("2.9.0", "dynamo"),
                           ("2.8.0", "torchscript"), ("2.2.2", "torchscript")):
        monkeypatch.setattr(torch, "__version__", version)
        order = recommended_exporters()
        assert order[0] == first and set(order) == {"dynamo", "torchscript"}


class _Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(6, 6, bias=False)
        self.bn = nn.BatchNorm1d(6)
        self.dec = nn.Linear(6, 6, bias=False)
        self.dec.weight = self.enc.weight  # tied: one storage, two state-dict keys

    def forward(self, x):
        return self.dec(self.bn(self.enc(x)))


@pytest.mark.skipif(not HAS_SAFETENSORS, reason="safetensors not installed")
def test_safetensors_with_tied_weights(tmp_path):
    from safetensors.torch import load_file

    model = _Tied()
    res = export(make_result(model), tmp_path, safetensors=True)
    tensors = load_file(res.files["safetensors"])
    assert torch.equal(tensors["enc.weight"], model.enc.weight)
    assert torch.equal(tensors["dec.weight"], model.enc.weight)
    fresh = _Tied()
    fresh.load_state_dict(load_checkpoint(res.files["checkpoint"])[0], strict=True)
    assert torch.equal(fresh.dec.weight, model.enc.weight)


def test_wrong_input_shape_is_reported(tmp_path):
    o = export_onnx(nn.Linear(4, 2), (3,), tmp_path / "m.onnx")
    assert o.ok is False and "rejects an input of shape (2, 3)" in o.error
    assert not (tmp_path / "m.onnx").exists()


def test_snippet_for_a_model_object_without_epochs():
    result = make_result()
    result.model_spec = "<CifarResNet object>"
    result.plan.epochs_new = None
    source = train_snippet(result)
    compile(source, "train_snippet.py", "exec")
    assert "def train(model, train_loader" in source and "load_model" not in source
    assert "EPOCHS = 1" in source and "range(EPOCHS)" in source and "import math" not in source
