"""The main job end to end, as the README's first line runs it (a smaller, fixed smoke run).

One real CLI run of the bundled example; every output file is then checked: report.json
against its schema, the ONNX model with onnx.checker, the checkpoint loaded strict into the
user's own class, the HTML's inline plots, the rewritten config. The smoke test makes a fixed
number of updates on simulated time (tests.helpers.fixed_steps) at 8×8 inputs, so what it
checks does not depend on how fast or loaded the machine is.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_MODEL
from tests.helpers import fixed_steps

#: Updates per smoke arm: the fewest the verdict calls conclusive (MIN_CONCLUSIVE_UPDATES).
SMOKE_STEPS = 50


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    from typer.testing import CliRunner

    import lbconvert.smoke.run
    from lbconvert.cli import app

    out = tmp_path_factory.mktemp("convert") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lbconvert.smoke.run, "run_smoke",
                   fixed_steps(lbconvert.smoke.run.run_smoke, SMOKE_STEPS))
        res = CliRunner().invoke(app, [
            str(EXAMPLE_MODEL), "--config", str(EXAMPLE_CONFIG), "--target-batch", "8192",
            "--onnx", "--input-shape", "3,8,8", "--smoke-time", "15", "--out", str(out),
        ], prog_name="lbconvert")
    return res, out


def test_exit_code_matches_report(converted):
    res, out = converted
    report = json.loads((out / "report.json").read_text())
    assert res.exit_code == (0 if report["verdict"]["ok"] else 1), res.output[-2000:]
    assert "Traceback" not in res.output


def test_report_json_schema_and_content(converted):
    import jsonschema

    from lbconvert.report.schema import REPORT_SCHEMA

    _, out = converted
    report = json.loads((out / "report.json").read_text())
    jsonschema.validate(report, REPORT_SCHEMA)
    assert report["plan"]["target_batch"] == 8192
    assert report["plan"]["lr_new"] == pytest.approx(0.1 * 8)  # √(8192/128) = 8
    assert report["surgery"]["converted"] == 21
    assert report["verification"]["passed"] is True
    smoke = report["smoke"]
    assert smoke["run"] is True, smoke.get("reason")
    assert {name: arm["steps"] for name, arm in smoke["arms"].items()} == \
        {"original": SMOKE_STEPS, "naive": SMOKE_STEPS, "converted": SMOKE_STEPS}
    assert all(arm["fit"]["slope"] > 0 for arm in smoke["arms"].values())
    # The plan's conversion (√M LR, GhostBatchNorm, LARS) makes up the distance the naive
    # large batch loses: the converted run ends farther out than the naive recipe, by more
    # than the verdict's naive margin, and never far short of the original.
    v = smoke["verdict"]
    final, naive = v["final_gap"], v["naive_final_gap"]
    assert final > naive + math.log1p(v["tolerance"] / 2), v["reason"]
    assert final >= -math.log1p(v["tolerance"]) and v["slope_ratio"] <= v["max_slope_ratio"]
    # ... so the level is the one those numbers give: PASS at a final gap ≥ 0, else WARN.
    assert v["level"] == ("PASS" if final >= 0 else "WARN"), v["reason"]
    assert report["verdict"]["ok"] is True


def test_checkpoint_loads_strict_into_original_class(converted):
    from lbconvert.model.load import load_model

    _, out = converted
    ckpt = torch.load(out / "model.pt", weights_only=True)
    state = ckpt["state_dict"] if "state_dict" in ckpt else ckpt
    model = load_model(str(EXAMPLE_MODEL)).module
    model.load_state_dict(state, strict=True)
    assert type(model).__name__ == "CifarResNet"


def test_onnx_passes_checker(converted):
    import onnx

    _, out = converted
    model = onnx.load(str(out / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)


def test_html_has_inline_plots_and_no_network(converted):
    _, out = converted
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 3  # distance, loss, LR schedule
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_rewritten_config_and_snippet(converted):
    _, out = converted
    cfg = yaml.safe_load((out / "cifar_resnet.yaml").read_text())
    assert cfg["train"]["batch_size"] == 8192
    assert cfg["optimizer"]["lr"] == pytest.approx(0.8)
    assert cfg["train"]["epochs"] == 164 * 64
    assert cfg["scheduler"]["milestones"] == [81 * 64, 122 * 64]
    compile((out / "train_snippet.py").read_text(), "train_snippet.py", "exec")
    assert "make_optimizer" in (out / "train_snippet.py").read_text()


def test_existing_output_needs_force(converted, cli):
    _, out = converted
    code, stdout, stderr = cli(str(EXAMPLE_MODEL), "--config", str(EXAMPLE_CONFIG),
                               "--target-batch", "8192", "--no-smoke", "--out", str(out))
    assert code == 2
    assert "--force" in stdout + stderr
