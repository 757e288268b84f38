"""`lbconvert MODEL` on repositories as they are laid out (issue 14): specs from the current
directory, --model-kwargs, models without BatchNorm, detection models, options and config
values refused before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from lbconvert.cli import app, expand_multi_value
from tests.conftest import REPO_LAYOUT

ROOT = Path(__file__).resolve().parents[2]
REPO = REPO_LAYOUT
MODELS = ROOT / "fixtures" / "models"


def _run(args, **kw):
    res = CliRunner().invoke(app, expand_multi_value([str(a) for a in args]),
                             prog_name="lbconvert", **kw)
    return res


QUICK = ["--target-batch", "1024", "--no-smoke", "--no-export", "--input-shape", "3,16,16"]


def test_package_folder_spec_from_repo_root_names_the_model(repo_root):
    res = _run(["models:ResNet18", *QUICK])
    assert res.exit_code == 0, res.output[-1500:]
    assert "model ResNet18 from models:ResNet18" in res.output
    assert "converted 10" in res.output


def test_module_spec_with_cwd_on_the_import_path(repo_root):
    res = _run(["models.resnet:ResNet34", *QUICK])
    assert res.exit_code == 0, res.output[-1500:]
    assert "model ResNet34" in res.output


def test_file_spec_lists_candidates_and_model_kwargs_unquoted(repo_root):
    res = _run(["models/resnet.py", *QUICK])
    assert res.exit_code == 2 and "several models (ResNet18, ResNet34)" in res.output
    res = _run(["models/vgg.py", *QUICK])
    assert res.exit_code == 2 and "--model-kwargs vgg_name=" in res.output
    # timm's spelling: several key=value words after one flag.
    res = _run(["models/vgg.py", "--model-kwargs", "vgg_name=VGG13", "num_classes=7", *QUICK])
    assert res.exit_code == 0, res.output[-1500:]
    assert "model VGG" in res.output and "vgg_name='VGG13'" in res.output
    assert "converted 4" in res.output


@pytest.mark.parametrize("factory, attention", [("TinyViT", True), ("TinyConvNeXt", False)])
def test_model_without_batchnorm_says_so(factory, attention):
    res = _run([f"{MODELS / 'no_bn.py'}:{factory}", *QUICK])
    assert res.exit_code == 0, res.output[-1500:]
    out = " ".join(res.output.split())
    assert "nothing for GhostBatchNorm to do" in out
    assert "Masters & Luschi" not in out  # the ghost-batch warning does not apply
    assert "ghost batch 128" not in out
    assert ("LAMB (You et al. 2020" in out) is attention
    assert "LARS (You et al. 2017)" in out


def test_detection_model_with_frozen_batchnorm_verifies():
    small = ["--batch-size", "16", "--lr", "0.02", "--target-batch", "64", "--no-smoke",
             "--no-export", "--input-shape", "3,8,8"]
    res = _run([f"{MODELS / 'detection_like.py'}", *small, "--ghost-batch", "2"])
    assert res.exit_code == 0, res.output[-2000:]
    out = " ".join(res.output.split())
    assert "converted 1" in out and "left alone 2" in out and "verified" in out
    res = _run([f"{MODELS / 'detection_like.py'}:frozen_only", *small])
    assert res.exit_code == 0, res.output[-2000:]
    assert "2 left as they are: frozen" in " ".join(res.output.split())


@pytest.mark.parametrize("flags, fragment", [
    (["--smoke-batch", "1"], "--smoke-batch"),
    (["--rule", "cubic"], "--rule"),
    (["--regime", "forever"], "--regime"),
    (["--input-shape", "3,a,32"], "--input-shape"),
    (["--model-kwargs", "depth"], "--model-kwargs"),
    (["--dynamic-size"], "--dynamic-size"),
    (["--opset", "3", "--onnx"], "--opset"),
    (["--device", "gpu0"], "--device"),
    (["--lr", "nan"], "--lr"),
])
def test_every_option_is_checked_before_the_model_is_loaded(tmp_path, flags, fragment):
    # The model file raises on import: an error about the flag proves nothing was loaded.
    spec = MODELS / "files" / "raises_on_import.py"
    res = _run([spec, "--target-batch", "1024", "--out", tmp_path / "o", *flags])
    assert res.exit_code == 2, res.output
    assert fragment in res.output and "ZeroDivisionError" not in res.output, res.output


def test_help_keeps_the_pyproject_table_name():
    res = _run(["--help"])
    assert res.exit_code == 0 and "[tool.lbconvert]" in res.output
    assert "declared in and audit" not in " ".join(res.output.split())


def test_log_output_is_wide_unless_columns_says_otherwise(monkeypatch):
    from lbconvert.cli.render_convert import LOG_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    assert make_console(file=__import__("io").StringIO()).width == LOG_WIDTH
    monkeypatch.setenv("COLUMNS", "100")
    assert make_console(file=__import__("io").StringIO()).width == 100


def test_snippet_paths_absolute_and_no_config_wording(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT / "fixtures" / "examples")
    out = tmp_path / "out"
    res = _run(["cifar_resnet.py", "--config", "cifar_resnet.yaml", "--target-batch", "1024",
                "--no-smoke", "--out", out])
    assert res.exit_code == 0, res.output[-1500:]
    snippet = (out / "train_snippet.py").read_text()
    assert repr(str(ROOT / "fixtures" / "examples" / "cifar_resnet.yaml")) in snippet
    assert repr(str(ROOT / "fixtures" / "examples" / "cifar_resnet.py")) in snippet
    res = _run(["cifar_resnet.py", "--target-batch", "1024", "--no-smoke", "--out",
                tmp_path / "flags"])
    assert res.exit_code == 0, res.output[-1500:]
    text = " ".join(res.output.split())
    assert "the training config came from flags" not in text and "flags only" not in text
    assert "no config file" in text and "assumed reference recipe" in text
    md = (tmp_path / "flags" / "report.md").read_text()
    assert "no config file (values from flags and the assumed ImageNet reference recipe)" in md


def test_snippet_imports_a_module_spec_from_where_it_was_found(repo_root, tmp_path):
    res = _run(["models.resnet:ResNet18", "--target-batch", "1024", "--no-smoke",
                "--input-shape", "3,16,16", "--out", tmp_path / "o"])
    assert res.exit_code == 0, res.output[-1500:]
    snippet = (tmp_path / "o" / "train_snippet.py").read_text()
    assert f"sys.path.insert(0, {str(REPO)!r})" in snippet
    compile(snippet, "train_snippet.py", "exec")


@pytest.mark.parametrize("flag, measured", [([], True), (["--no-noise-scale"], False)])
def test_noise_scale_flag_reaches_the_smoke_options(monkeypatch, flag, measured):
    import lbconvert.api

    seen = {}

    def fake_convert(*args, smoke=None, **kw):
        seen["smoke"] = smoke
        raise SystemExit(0)

    monkeypatch.setattr(lbconvert.api, "convert", fake_convert)
    res = _run([MODELS / "no_bn.py", "--target-batch", "1024", "--no-export", *flag])
    assert res.exit_code == 0, res.output
    assert seen["smoke"].noise_scale is measured


@pytest.mark.parametrize("words", [8, 30])  # fits the title at 80 columns / does not
def test_summary_headline_is_never_cut(monkeypatch, words):
    import re

    from rich.console import Console

    import lbconvert.report.build as build
    from lbconvert.cli.render_summary import render_summary
    from tests.helpers import make_result

    real = build.overall_verdict
    headline = " ".join(f"fasterrcnn_word{i}" for i in range(words))

    def long_headline(*args, **kwargs):
        return {**real(*args, **kwargs), "headline": headline}

    monkeypatch.setattr(build, "overall_verdict", long_headline)
    console = Console(record=True, width=80, color_system=None)
    render_summary(make_result(smoke=False), None, console)
    text = console.export_text()
    assert max(len(ln) for ln in text.splitlines()) <= 80
    flat = " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())
    assert headline in flat, text
