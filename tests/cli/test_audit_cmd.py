"""``lbconvert audit`` end to end: exit codes, formats, --list-rules, no torch for logs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lbconvert.cli import app

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "fixtures" / "runs"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["audit", *map(str, args)])


def test_undertrained_vs_baseline_exits_1_with_evidence():
    r = invoke(RUNS / "undertrained-bs4096", "--baseline", RUNS / "baseline-bs128")
    assert r.exit_code == 1, r.output
    assert "LB001" in r.output and "updates_ratio=0.03325" in r.output
    assert "164 → 5248" in r.output


def test_adapted_run_exits_0():
    r = invoke(RUNS / "adapted-bs4096", "--baseline", RUNS / "baseline-bs128")
    assert r.exit_code == 0, r.output
    assert "no findings" in r.output


def test_fail_on_levels():
    args = (RUNS / "undertrained-bs4096", "--reference-batch", "4096")
    assert invoke(*args, "--fail-on", "error").exit_code == 0  # only warnings, no baseline
    assert invoke(*args, "--fail-on", "warning").exit_code == 1
    assert invoke(RUNS / "timm-lars-nowarmup", "--fail-on", "never").exit_code == 0


def test_input_errors_exit_2(tmp_path):
    r = invoke(tmp_path)
    assert r.exit_code == 2
    assert "no recognisable training run" in r.output and "trainer_state.json" in r.output
    assert invoke(RUNS / "adapted-bs4096", "--format", "xml").exit_code == 2
    assert invoke(RUNS / "adapted-bs4096", "--fail-on", "bad").exit_code == 2


def test_output_file_and_json(tmp_path):
    out = tmp_path / "a.json"
    r = invoke(RUNS / "timm-lars-nowarmup", "--format", "json", "--output", out)
    assert r.exit_code == 1
    doc = json.loads(out.read_text())
    assert {f["rule_id"] for f in doc["runs"][0]["findings"]} >= {"LB008", "LB009"}


def test_list_rules():
    r = invoke("--list-rules")
    assert r.exit_code == 0
    for rid in ("LB001", "LB005", "LB009"):
        assert rid in r.output


def test_github_format_writes_step_summary(tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    r = invoke(RUNS / "undertrained-bs4096", "--baseline", RUNS / "baseline-bs128",
               "--format", "github")
    assert r.output.startswith("::error ")
    assert "LB001" in summary.read_text()


def test_logs_only_audit_does_not_import_torch():
    code = ("import sys\nfrom lbconvert.cli import main\n"
            "try:\n    main(['audit', sys.argv[1], '--baseline', sys.argv[2], '-f', 'sarif'])\n"
            "except SystemExit as e:\n    code = e.code\n"
            "heavy = [m for m in ('torch', 'torchvision', 'onnx', 'tensorflow')\n"
            "         if m in sys.modules]\n"
            "print('HEAVY', heavy, 'CODE', code, file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code, str(RUNS / "undertrained-bs4096"),
                        str(RUNS / "baseline-bs128")], capture_output=True, text=True,
                       cwd=ROOT)
    assert "HEAVY [] CODE 1" in p.stderr, p.stderr


def test_reference_batch_and_lr_and_config_fill_in(tmp_path):
    r = invoke(RUNS / "undertrained-bs4096", "--reference-batch", "128", "--reference-lr", "0.1",
               "--format", "json")
    ids = {f["rule_id"] for f in json.loads(r.output)["runs"][0]["findings"]}
    assert {"LB001", "LB002"} <= ids
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("dataset_size: 640\noptimizer: lars\n")
    r = invoke(RUNS / "lightning-ckpt", "--logs-only", "--config", cfg, "--format", "json")
    run = json.loads(r.output)["runs"][0]
    assert run["run"]["config"]["dataset_size"]["source"] == "--config cfg.yaml (dataset_size)"
    assert run["run"]["epochs_done"] == 30 / 10  # 640 / 64 = 10 updates per epoch
    assert invoke(RUNS / "lightning-ckpt", "--config", tmp_path / "none.yaml").exit_code == 2


def test_unwritable_output_is_one_line_exit_2(tmp_path):
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file" / "report.json", tmp_path):  # under a file; a folder
        r = invoke(RUNS / "adapted-bs4096", "-f", "json", "--output", out)
        assert r.exit_code == 2, r.output
        assert isinstance(r.exception, SystemExit), r.exception
        assert "cannot write --output" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no temp file left


def test_unwritable_github_step_summary_warns_and_keeps_the_exit_code(tmp_path):
    env = {"GITHUB_STEP_SUMMARY": str(tmp_path / "missing" / "summary.md")}
    r = runner.invoke(app, ["audit", str(RUNS / "undertrained-bs4096"), "--baseline",
                            str(RUNS / "baseline-bs128"), "-f", "github"], env=env)
    assert r.exit_code == 1 and isinstance(r.exception, SystemExit), r.exception
    assert "::error" in r.output and "cannot append the job summary" in r.output


@pytest.mark.parametrize("name, first", [("out.sarif", '"version": "2.1.0"'),
                                         ("out.json", '"runs"'), ("out.md", "#"),
                                         ("out.xml", "<?xml")])
def test_output_suffix_names_the_format_when_format_is_not_given(tmp_path, name, first):
    """`-o audit.sarif` writes SARIF, not a table into a .sarif file."""
    out = tmp_path / name
    r = invoke(RUNS / "baseline-bs128", "-o", out)
    assert r.exit_code in (0, 1), r.output
    text = out.read_text()
    assert first in text and "┃" not in text


def test_explicit_format_wins_over_the_suffix(tmp_path):
    out = tmp_path / "out.sarif"
    r = invoke(RUNS / "baseline-bs128", "-f", "json", "-o", out)
    assert r.exit_code in (0, 1), r.output
    text = out.read_text()
    assert '"$schema"' not in text and '"runs"' in text


def test_also_writes_more_formats_from_the_same_run(tmp_path):
    """`-f github --also sarif:x.sarif --also y.xml`: one audit, three outputs that agree."""
    sarif, junit = tmp_path / "ci" / "x.sarif", tmp_path / "y.xml"
    r = invoke(RUNS / "undertrained-bs4096", "--baseline", RUNS / "baseline-bs128",
               "-f", "github", "--also", f"sarif:{sarif}", "--also", junit)
    assert r.exit_code == 1, r.output
    assert r.output.startswith("::error ") and "LB001" in r.output
    doc = json.loads(sarif.read_text())
    assert doc["version"] == "2.1.0"
    assert "LB001" in {res["ruleId"] for res in doc["runs"][0]["results"]}
    assert junit.read_text().startswith("<?xml") and "LB001" in junit.read_text()


def test_also_without_a_format_is_one_line_exit_2_before_any_work(tmp_path):
    for value, says in (("report.txt", "names no output format"),
                        ("xml:out.xml", "'xml' is not an output format"),
                        ("", "names no output format")):
        r = invoke(RUNS / "adapted-bs4096", "--also", value)
        assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
        assert says in r.output and "sarif:lbconvert.sarif" in r.output
    (tmp_path / "file").write_text("x")
    r = invoke(RUNS / "adapted-bs4096", "--also", f"json:{tmp_path / 'file' / 'a.json'}")
    assert r.exit_code == 2 and "cannot write --also json: " in r.output
