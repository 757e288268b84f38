"""``lbconvert plan --noise-scale-from report.json``: the measured noise scale beside the plan,
json only (no torch), and one-line exit-2 errors naming the flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lbconvert.cli import app
from lbconvert.report.noise_scale import noise_scale_line

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "fixtures" / "examples" / "cifar_resnet.yaml"
runner = CliRunner()

NOISE = {"b_simple": 310.0, "stderr": 40.0, "g2": 0.5, "trace": 155.0, "b_small": 2,
         "b_big": 128, "rounds": 4, "at": "end of the original arm", "update": 96,
         "weights": "original", "mode": "train", "data": "synthetic", "synthetic": True,
         "points": [], "cost": {"passes": 512, "samples": 1024, "seconds": 3.0},
         "target_batch": 4096, "line": "stale line for 4096"}


def write_report(path: Path, smoke: dict) -> Path:
    path.write_text(json.dumps({"schema_version": "1.0", "kind": "convert", "smoke": smoke}),
                    encoding="utf-8")
    return path


@pytest.fixture
def report(tmp_path):
    return write_report(tmp_path / "report.json", {"run": True, "noise_scale": NOISE})


def run(*args: str):
    return runner.invoke(app, ["plan", "--config", str(EXAMPLE), *args], terminal_width=400)


def test_table_shows_the_line_for_this_plans_target(report):
    result = run("--target-batch", "8192", "--noise-scale-from", str(report))
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "Gradient noise scale B_simple ≈ 310 ± 40" in out
    assert "target 8192 is 26× it" in out and "McCandlish et al. 2018" in out
    assert "synthetic data" in out and "--data" in out and str(report) in out
    assert "stale line" not in out  # recomputed for this plan's target, not the report's


def test_json_carries_the_measurement_and_the_line(report):
    result = run("--target-batch", "1024", "--format", "json", "--noise-scale-from", str(report))
    assert result.exit_code == 0, result.output
    ns = json.loads(result.output)["noise_scale"]
    assert ns["b_simple"] == 310.0 and ns["target_batch"] == 1024 and ns["report"] == str(report)
    assert ns["line"] == noise_scale_line(NOISE, 1024) and "3.3× it" in ns["line"]


@pytest.mark.parametrize("content, why", [
    (None, "no such file"),
    ("{not json", "not a JSON report"),
    (json.dumps({"kind": "audit", "schema_version": "1.0"}), "not an lbconvert convert report"),
    (json.dumps({"kind": "convert", "schema_version": "1.0",
                 "smoke": {"run": False, "reason": "--no-smoke"}}), "smoke test did not run"),
    (json.dumps({"kind": "convert", "schema_version": "1.0", "smoke": {"run": True}}),
     "no noise-scale measurement"),
])
def test_bad_reports_exit_2_with_one_line_naming_the_flag(tmp_path, content, why):
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    result = run("--target-batch", "8192", "--noise-scale-from", str(path))
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    error = lines[0]  # one line, then the CLI's usual --debug hint
    assert error.startswith("lbconvert: error: --noise-scale-from ") and why in error, error
    assert str(path) in error and lines[1:] == [
        "  (run with --debug or LBCONVERT_DEBUG=1 for the traceback)"]
