"""Model specs → nn.Module, and every way a spec can be wrong (exit 2 with a fix)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from lbconvert.errors import LbconvertError
from lbconvert.model.load import load_model, load_weights
from lbconvert.model.probe import infer_input_shape
from tests.conftest import EXAMPLE_MODEL

FILES = Path(__file__).resolve().parents[2] / "fixtures" / "models" / "files"


def test_file_with_factory_gets_num_classes():
    loaded = load_model(str(EXAMPLE_MODEL), num_classes=7)
    assert loaded.factory == "build_model"
    assert loaded.module.fc.out_features == 7
    assert infer_input_shape(loaded.module) == (3, 32, 32)


def test_single_class_file_and_explicit_attr():
    loaded = load_model(str(FILES / "single_class.py"))
    assert type(loaded.module).__name__ == "Tiny"
    assert infer_input_shape(loaded.module) == (8,)
    assert load_model(f"{FILES / 'two_classes.py'}:B").factory == "B"


def test_package_module_attr():
    loaded = load_model("torchvision.models:resnet18")
    assert isinstance(loaded.module, nn.Module) and loaded.source == "module"


def test_torchvision_spec_has_input_shape_and_no_download():
    loaded = load_model("torchvision:mobilenet_v3_small", num_classes=10)
    assert loaded.input_shape == (3, 224, 224)
    assert loaded.module.classifier[-1].out_features == 10


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("missing_file.py", "does not exist"),
        (str(FILES / "raises_on_import.py"), "ZeroDivisionError"),
        (str(FILES / "needs_args.py"), "needs arguments (width, depth)"),
        (str(FILES / "two_classes.py"), "several nn.Module classes"),
        (str(FILES / "not_a_module.py"), "not a torch.nn.Module"),
        (f"{FILES / 'single_class.py'}:Nope", "'Nope' not found"),
        ("torchvision:resnet5O", "did you mean"),
        ("no_such_pkg_xyz.models:net", "cannot import module"),
        ("justaword", "names nothing"),
    ],
)
def test_bad_specs_raise_user_errors(spec, fragment):
    with pytest.raises(LbconvertError, match=None) as info:
        load_model(spec)
    assert fragment in str(info.value)


def test_weights_plain_lightning_and_pickled(tmp_path):
    src = load_model(str(EXAMPLE_MODEL)).module
    with torch.no_grad():
        for p in src.parameters():
            p.add_(1.0)
    plain = tmp_path / "w.pt"
    torch.save(src.state_dict(), plain)
    dst = load_model(str(EXAMPLE_MODEL), weights=plain).module
    assert torch.equal(dst.fc.weight, src.fc.weight)

    ckpt = tmp_path / "l.ckpt"
    torch.save({"epoch": 3, "state_dict": {f"model.{k}": v for k, v in src.state_dict().items()}},
               ckpt)
    dst = load_model(str(EXAMPLE_MODEL), weights=ckpt).module
    assert torch.equal(dst.conv1.weight, src.conv1.weight)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:
        pickle.dump({"w": Evil()}, fh)
    with pytest.raises(LbconvertError, match="pickled Python objects"):
        load_weights(dst, evil)

    wrong = tmp_path / "wrong.pt"
    torch.save({"other.weight": torch.zeros(1)}, wrong)
    with pytest.raises(LbconvertError, match="does not match the model"):
        load_weights(dst, wrong)
