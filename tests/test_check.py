"""``lbconvert check``: [tool.lbconvert] parsing, runs audit, one model converted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lbconvert.check import load_check_config, run_check
from lbconvert.cli import app
from lbconvert.errors import LbconvertError

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "fixtures" / "repo"
runner = CliRunner()


def test_config_parsed_from_pyproject():
    cfg = load_check_config(REPO)
    assert cfg.models[0].spec == "model.py" and cfg.models[0].target_batches == [1024]
    assert cfg.runs == ["../runs/adapted-bs4096"] and cfg.fail_on == "error"


def test_missing_table_and_bad_entries(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    with pytest.raises(LbconvertError, match=r"no \[tool.lbconvert\]"):
        load_check_config(tmp_path)
    (tmp_path / "lbconvert.toml").write_text("[[models]]\nspec='m.py'\n")
    with pytest.raises(LbconvertError, match="target-batches"):
        load_check_config(tmp_path)


def test_runs_only_gate_fails_on_an_undertrained_run(tmp_path):
    (tmp_path / "lbconvert.toml").write_text(
        f"baseline = '{ROOT / 'fixtures/runs/baseline-bs128'}'\n"
        f"runs = ['{ROOT / 'fixtures/runs/undertrained-bs4096'}', "
        f"'{ROOT / 'fixtures/runs/adapted-bs4096'}']\n")
    report = run_check(tmp_path)
    assert report.exit_code == 1
    assert [bool(r.findings) for r in report.runs] == [True, False]
    r = runner.invoke(app, ["check", str(tmp_path), "--runs-only", "-f", "junit"])
    assert r.exit_code == 1 and r.output.startswith("<?xml")


def test_check_fixture_repo_converts_and_verifies_the_model():
    r = runner.invoke(app, ["check", str(REPO), "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    (model,) = doc["models"]
    assert model["ok"] and model["target_batch"] == 1024
    assert model["verification"]["passed"]
    assert doc["runs"][0]["findings"] == []


def test_bad_fail_on_and_missing_run_paths_name_the_config_key(tmp_path):
    runs = ROOT / "fixtures" / "runs"
    toml = tmp_path / "lbconvert.toml"
    toml.write_text(f"runs = ['{runs / 'adapted-bs4096'}']\nfail-on = 'warnings'\n")
    with pytest.raises(LbconvertError, match=r"lbconvert.toml: \[tool.lbconvert\] fail-on"):
        load_check_config(tmp_path)
    toml.write_text(f"runs = ['{runs / 'adapted-bs4096'}', 'runs/missing']\n")
    with pytest.raises(LbconvertError, match=r"\] runs: 'runs/missing' is not a folder"):
        load_check_config(tmp_path)
    toml.write_text(f"baseline = 'base'\nruns = ['{runs / 'adapted-bs4096'}']\n")
    r = runner.invoke(app, ["check", str(tmp_path), "--runs-only"])
    assert r.exit_code == 2 and "baseline: 'base' is not a folder" in r.output
