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
from tests.conftest import EXAMPLE_MODEL, REPO_LAYOUT

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
        (str(FILES / "two_classes.py"), "several models (A, B)"),
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


REPO = REPO_LAYOUT


def _bn_count(module):
    return sum(isinstance(m, nn.BatchNorm2d) for m in module.modules())


def test_package_folder_and_module_specs_from_the_current_directory(repo_root):
    by_folder = load_model("models:ResNet18")
    assert by_folder.source == "package" and by_folder.name == "ResNet18"
    # ResNet18 here: stem BN + 2 blocks × 2 BN + 2 stages' second... count independently:
    # stage 1: 2 blocks × 2 BN; stage 2: 2 blocks × 2 BN + 1 shortcut BN; plus the stem.
    assert _bn_count(by_folder.module) == 1 + 4 + 4 + 1
    by_module = load_model("models.resnet:ResNet18")
    assert by_module.source == "module" and _bn_count(by_module.module) == 10
    # A name only in a submodule (models/__init__ does not import vgg) is found there.
    vgg = load_model("models:VGG", model_kwargs={"vgg_name": "VGG11"})
    assert vgg.factory == "VGG" and vgg.kwargs == {"vgg_name": "VGG11"}


def test_file_without_name_lists_models_not_helper_blocks(repo_root):
    with pytest.raises(LbconvertError) as info:
        load_model("models/resnet.py")
    # BasicBlock builds without arguments but ResNet18 uses it: a part, not a candidate.
    assert "several models (ResNet18, ResNet34)" in str(info.value)
    assert "BasicBlock" not in str(info.value)


def test_file_without_name_picks_the_one_model(tmp_path):
    src = (REPO / "models" / "resnet.py").read_text().split("def ResNet34")[0]
    (tmp_path / "one.py").write_text(src)
    loaded = load_model(str(tmp_path / "one.py"))
    assert loaded.factory == "ResNet18" and loaded.name == "ResNet18"
    assert any("chose ResNet18" in n for n in loaded.notes)


def test_builder_needing_arguments_takes_model_kwargs(repo_root):
    with pytest.raises(LbconvertError) as info:
        load_model("models/vgg.py")
    assert "VGG needs arguments (vgg_name)" in str(info.value)
    assert "--model-kwargs vgg_name=" in info.value.hint
    loaded = load_model("models/vgg.py", model_kwargs={"vgg_name": "VGG13"})
    assert loaded.factory == "VGG" and _bn_count(loaded.module) == 4  # VGG13: 4 convs
    with pytest.raises(LbconvertError, match="takes no such argument"):
        load_model("models/vgg.py:VGG", model_kwargs={"vgg_name": "VGG11", "depth": 3})


def test_parse_model_kwargs_literals_and_strings():
    from lbconvert.model.candidates import parse_model_kwargs

    assert parse_model_kwargs(["vgg_name=VGG16", "depth=3 width=0.5,bias=False",
                               "drop=None"]) == {"vgg_name": "VGG16", "depth": 3,
                                                  "width": 0.5, "bias": False, "drop": None}
    with pytest.raises(LbconvertError, match="not key=value"):
        parse_model_kwargs(["depth"])


def test_torchvision_and_timm_take_model_kwargs():
    loaded = load_model("torchvision:resnet18", model_kwargs={"zero_init_residual": True})
    assert float(loaded.module.layer1[0].bn2.weight.detach().abs().sum()) == 0.0
    with pytest.raises(LbconvertError, match="torchvision resnet18"):
        load_model("torchvision:resnet18", model_kwargs={"no_such_arg": 1})


def test_torchvision_detection_builds_without_a_backbone_download():
    # weights_backbone defaults to ImageNet weights (a download); lbconvert passes None, and
    # torchvision then builds trainable BatchNorm2d instead of FrozenBatchNorm2d.
    loaded = load_model("torchvision:fasterrcnn_mobilenet_v3_large_320_fpn")
    assert loaded.input_shape is None  # images of any size: probed later
    assert _bn_count(loaded.module) > 0


@pytest.mark.parametrize("body, fragment", [
    ("    return Net(kwargs['width'])", "--model-kwargs width=..."),
    ("    return Net(**kwargs)", "--model-kwargs key=value"),
])
def test_kwargs_factory_that_fails_names_model_kwargs(tmp_path, body, fragment):
    path = tmp_path / "kw_model.py"
    path.write_text(
        "import torch.nn as nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, width):\n"
        "        super().__init__()\n"
        "        self.fc = nn.Linear(width, 2)\n\n"
        f"def build_model(**kwargs):\n{body}\n"
    )
    with pytest.raises(LbconvertError) as info:
        load_model(str(path))
    assert fragment in str(info.value), str(info.value)
    loaded = load_model(str(path), model_kwargs={"width": 3})
    assert loaded.module.fc.in_features == 3
