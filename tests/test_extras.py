"""Every feature that needs an optional package says which extra installs it (issue 21).

Each package is made unimportable the way a missing install is (``sys.modules[name] = None``
makes ``import name`` raise ImportError); the error must be one ``lbconvert: error:`` line,
exit 2, naming ``pip install 'lbconvert[<extra>]'``.
"""

from __future__ import annotations

import sys
import tomllib

import pytest
from typer.testing import CliRunner

from lbconvert.cli import app
from lbconvert.errors import LbconvertError
from lbconvert.extras import EXTRA_OF, install_hint, require
from tests.conftest import EXAMPLE_MODEL, ROOT


def _missing(monkeypatch, *names: str) -> None:
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            monkeypatch.delitem(sys.modules, loaded)
        monkeypatch.setitem(sys.modules, name, None)


def test_every_extra_named_exists_in_pyproject():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for module, extra in EXTRA_OF.items():
        assert extra in extras, f"{module} points at extra {extra!r}, not in pyproject.toml"
        assert any(req.split(">")[0].split("=")[0].strip() == module
                   for req in extras[extra]), (module, extras[extra])
        assert any(req.split(">")[0].split("=")[0].strip() == module
                   for req in extras["all"]), f"{module} missing from the 'all' extra"


@pytest.mark.parametrize("args, extra", [
    (["torchvision:resnet18"], "vision"),
    (["timm:resnet18"], "timm"),
    ([str(EXAMPLE_MODEL), "--data", "torchvision:FakeData"], "vision"),
    ([str(EXAMPLE_MODEL), "--safetensors", "--no-smoke"], "safetensors"),
])
def test_cli_names_the_extra_before_loading_the_model(monkeypatch, tmp_path, args, extra):
    _missing(monkeypatch, "torchvision", "timm", "safetensors")
    import lbconvert.model.load as load

    def must_not_load(*a, **k):
        raise AssertionError("the model was loaded before the missing package was named")

    monkeypatch.setattr(load, "load_model", must_not_load)
    res = CliRunner().invoke(app, [*args, "--target-batch", "1024", "--out",
                                   str(tmp_path / "o")], prog_name="lbconvert")
    assert res.exit_code == 2, res.output
    error = res.output.splitlines()[0]
    assert error.startswith("lbconvert: error: ") and f"'lbconvert[{extra}]'" in error, error
    assert "Traceback" not in res.output


def test_torchvision_spec_from_python_names_the_extra(monkeypatch):
    from lbconvert.model.load import load_model

    _missing(monkeypatch, "torchvision")
    with pytest.raises(LbconvertError, match=r"needs torchvision.*lbconvert\[vision\]"):
        load_model("torchvision:resnet18")


def test_timm_spec_from_python_names_the_extra(monkeypatch):
    from lbconvert.model.load import load_model

    _missing(monkeypatch, "timm")
    with pytest.raises(LbconvertError, match=r"needs timm.*lbconvert\[timm\]"):
        load_model("timm:resnet18")


def test_fakedata_from_python_names_the_extra(monkeypatch):
    from lbconvert.smoke.data import make_pool

    _missing(monkeypatch, "torchvision")
    with pytest.raises(LbconvertError, match=r"torchvision:FakeData needs torchvision.*"
                                             r"lbconvert\[vision\]"):
        make_pool("torchvision:FakeData", input_shape=(3, 8, 8), num_classes=10,
                  output_dim=None, pool_size=4, seed=0, device="cpu")


def test_user_model_importing_torchvision_names_the_extra(monkeypatch, tmp_path):
    from lbconvert.model.load import load_model

    model = tmp_path / "net.py"
    model.write_text("import torchvision\n\ndef build_model():\n    return None\n")
    _missing(monkeypatch, "torchvision")
    with pytest.raises(LbconvertError, match=r"ModuleNotFoundError.*lbconvert\[vision\]"):
        load_model(str(model))


def test_safetensors_checkpoints_in_an_audit_name_the_extra(monkeypatch, tmp_path):
    from lbconvert.audit.read.checkpoints import _load

    _missing(monkeypatch, "safetensors")
    with pytest.raises(LbconvertError, match=r"needs safetensors.*lbconvert\[safetensors\]"):
        _load(tmp_path / "step_10.safetensors")


def test_report_without_matplotlib_says_which_extra(monkeypatch):
    from lbconvert.report.html import render_html

    _missing(monkeypatch, "matplotlib")
    page, plots = render_html({"verdict": {"headline": "h"}})
    assert plots == [] and "lbconvert[report]" in page


def test_installed_but_broken_package_is_not_called_missing(monkeypatch):
    import importlib

    real = importlib.import_module

    def broken(name, *a, **k):
        if name == "torchvision":  # what a torchvision built for another torch raises
            raise RuntimeError("operator torchvision::nms does not exist\nmore")
        return real(name, *a, **k)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(LbconvertError) as info:
        require("torchvision", "model spec 'torchvision:resnet18'")
    text = str(info.value)
    assert "installed but fails to import" in text and "torchvision::nms" in text
    assert "more" not in text and "lbconvert[vision]" in text


def test_hint_pins_the_installed_torch_for_packages_that_pin_torch():
    from importlib.metadata import version

    assert install_hint("torchvision") == (
        f"pip install 'lbconvert[vision]' 'torch=={version('torch')}' "
        f"(the pin keeps your torch {version('torch')})")
    assert install_hint("safetensors") == "pip install 'lbconvert[safetensors]'"


def test_require_returns_the_module():
    assert require("json", "x") is sys.modules["json"]
    assert require("json.decoder", "x") is sys.modules["json.decoder"]
