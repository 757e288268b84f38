"""``lbconvert check``: [tool.lbconvert] parsing, runs audit, one model converted."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

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
    # The gate (fail-on error) fails on exactly one finding: LB001, too few updates, on the
    # undertrained run; the adapted run (same batch, epochs × M) has none.
    errors = [(f.rule_id, Path(f.run).name) for r in report.runs for f in r.findings
              if f.severity == "error"]
    assert errors == [("LB001", "undertrained-bs4096")]
    assert report.runs[1].findings == []
    lb001 = report.runs[0].findings[0]
    ev = lb001.evidence
    assert lb001.rule_id == "LB001" and ev["M"] == 4096 / 128
    assert ev["updates"] < ev["baseline_updates"]
    assert ev["updates_ratio"] == pytest.approx(ev["updates"] / ev["baseline_updates"], rel=1e-3)
    r = runner.invoke(app, ["check", str(tmp_path), "--runs-only", "-f", "junit"])
    assert r.exit_code == 1 and r.output.startswith("<?xml")
    failed = [case.get("name") for case in ET.fromstring(r.output).iter("testcase")
              if case.find("failure") is not None]
    assert failed == ["LB001 Too few updates for the batch size"]


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


@pytest.mark.parametrize("name, text, key, near", [
    ("pyproject.toml", "[tool.lbconvert]\nbasline = 'runs/base'\nruns = ['{run}']\n",
     "basline", "baseline"),
    ("lbconvert.toml", "runs = ['{run}']\nfail_onn = 'warning'\n", "fail_onn", "fail-on"),
    ("lbconvert.toml", "runs = ['{run}']\n[[models]]\nspec = 'm.py'\ntarget-batches = [8]\n"
     "input_shap = [3, 8, 8]\n", "input_shap", "input-shape"),
])
def test_unknown_keys_exit_2_naming_key_file_and_nearest(tmp_path, name, text, key, near):
    run = ROOT / "fixtures" / "runs" / "undertrained-bs4096"
    (tmp_path / name).write_text(text.format(run=run))
    r = runner.invoke(app, ["check", str(tmp_path), "--runs-only"])
    assert r.exit_code == 2
    line = " ".join(r.output.split())
    assert f"unknown key {key!r}" in line and name in line
    assert f"did you mean {near!r}?" in line
    assert "Traceback" not in r.output


def test_underscore_spellings_are_known_keys(tmp_path):
    run = ROOT / "fixtures" / "runs" / "adapted-bs4096"
    (tmp_path / "lbconvert.toml").write_text(f"runs = ['{run}']\nfail_on = 'never'\n"
                                             "reference_batch = 128\n")
    cfg = load_check_config(tmp_path)
    assert cfg.fail_on == "never" and cfg.reference_batch == 128


def test_readme_ci_recipe_shows_a_not_judged_lb001(tmp_path):
    # a naive run declared without a baseline: the gate cannot judge LB001, and says so in
    # the annotations and in SARIF (issue 22: no silent pass in the CI formats)
    run = ROOT / "fixtures" / "real" / "summarywriter" / "naive"
    (tmp_path / "pyproject.toml").write_text(f"[tool.lbconvert]\nruns = ['{run}']\n")
    sarif = tmp_path / "lbconvert.sarif"
    r = runner.invoke(app, ["check", str(tmp_path), "--runs-only", "--format", "github",
                            "--also", f"sarif:{sarif}"])
    assert r.exit_code == 0, r.output  # nothing judged at error: but not silently
    notice = [ln for ln in r.output.splitlines() if ln.startswith("::notice ")
              and "LB001" in ln]
    assert len(notice) == 1 and "LB001 not judged: no --baseline" in notice[0]
    doc = json.loads(sarif.read_text())
    notes = [x for x in doc["runs"][0]["results"] if x["ruleId"] == "LB001"]
    assert notes and notes[0]["level"] == "note" and "not judged" in notes[0]["message"]["text"]
