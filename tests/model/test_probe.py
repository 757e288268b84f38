"""The one model probe: logits of dict/tuple/namedtuple/tensor outputs, input shape, classes."""

from __future__ import annotations

from collections import OrderedDict, namedtuple

import pytest
import torch
import torch.nn as nn

from lbconvert.errors import LbconvertError
from lbconvert.model.probe import infer_input_shape, logits_of, probe_output, resolve_input_shape

Out = namedtuple("Out", ["aux", "logits"])


class Net(nn.Module):
    """A conv net whose output structure is chosen by ``kind``; 5 classes."""

    def __init__(self, kind: str = "tensor") -> None:
        super().__init__()
        self.kind = kind
        self.conv = nn.Conv2d(3, 4, 3)
        self.fc = nn.Linear(4, 5)

    def forward(self, x):
        feat = self.conv(x).mean((2, 3))
        logits = self.fc(feat)
        if self.kind == "dict":  # features first: the first value is NOT the logits
            return OrderedDict(features=feat, logits=logits)
        if self.kind == "dict_out":  # torchvision segmentation style
            return {"aux": feat, "out": logits}
        if self.kind == "tuple":
            return logits, feat
        if self.kind == "namedtuple":
            return Out(aux=feat, logits=logits)
        if self.kind == "nested":
            return [{"logits": logits}]
        return logits


@pytest.mark.parametrize("kind", ["tensor", "dict", "dict_out", "tuple", "namedtuple", "nested"])
def test_logits_and_classes_for_every_output_structure(kind):
    model = Net(kind)
    x = torch.randn(2, 3, 8, 8)
    expected = Net("tensor")
    expected.load_state_dict(model.state_dict())
    with torch.no_grad():
        got, ref = logits_of(model(x)), expected(x)
    assert torch.equal(got, ref)  # the logits, not the features that come first
    probe = probe_output(model, (3, 8, 8))
    assert (probe.width, probe.num_classes, probe.shape) == (5, 5, (5,))
    assert "from the model's output" in probe.note
    assert model.training  # the caller's model is untouched (a copy was probed)


def test_output_without_tensor_is_a_type_error():
    with pytest.raises(TypeError, match="holding no tensor"):
        logits_of({"loss": None, "names": ["a"]})


def test_class_mismatch_strict_raises_lenient_keeps_config():
    with pytest.raises(LbconvertError, match="num_classes 10 but the model outputs 5"):
        probe_output(Net(), (3, 8, 8), 10)
    probe = probe_output(Net(), (3, 8, 8), 10, strict=False)
    assert probe.num_classes == 10 and "outputs 5 values" in probe.note


def test_input_shape_inferred_from_first_layer_and_confirmed():
    # 3 input channels from the conv; 32 px is the smallest usual size accepted.
    assert infer_input_shape(Net()) == (3, 32, 32)
    assert infer_input_shape(nn.Sequential(nn.Linear(7, 2))) == (7,)
    # Only 64 px works (the flatten fixes the spatial size): 32 is rejected, 64 is found.
    fixed = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Flatten(), nn.Linear(2 * 64 * 64, 3))
    assert infer_input_shape(fixed) == (1, 64, 64)


def test_shape_that_cannot_be_inferred():
    class Tokens(nn.Module):  # first layer an embedding: no conv/linear tells the shape
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, ids):
            return self.head(self.emb(ids).mean(1))

    assert infer_input_shape(nn.Sequential(nn.ReLU())) is None
    # The head is a Linear(4): probing (4,) float input fails inside the embedding.
    assert infer_input_shape(Tokens()) is None
    assert resolve_input_shape(Tokens(), None) == (None, None)
    with pytest.raises(LbconvertError, match=r"rejects inputs of shape \[3, 8, 8\]"):
        probe_output(Tokens(), (3, 8, 8))


def test_shape_sources_in_order():
    model = Net()
    assert resolve_input_shape(model, (3, 9, 9), (3, 8, 8)) == ((3, 9, 9), None)
    shape, note = resolve_input_shape(model, None, (3, 8, 8), "train.yaml: input_size")
    assert shape == (3, 8, 8) and "train.yaml: input_size" in note
    shape, note = resolve_input_shape(model, None, None, loaded_shape=(3, 16, 16),
                                      loaded_source="timm")
    assert shape == (3, 16, 16) and "timm" in note
    shape, note = resolve_input_shape(model, None)
    assert shape == (3, 32, 32) and "probing" in note
