"""Every output format, validated: SARIF against the 2.1.0 rules we rely on, JUnit as XML."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import jsonschema
import pytest

from lbconvert.audit.analyze.rules import RULES
from lbconvert.audit.pipeline import audit_runs
from lbconvert.audit.render import escape_data, escape_property, render, render_github
from tests.helpers import SARIF_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "fixtures" / "runs"
@pytest.fixture(scope="module")
def report():
    return audit_runs([RUNS / "undertrained-bs4096", RUNS / "timm-lars-nowarmup",
                       RUNS / "adapted-bs4096"], baseline_dir=RUNS / "baseline-bs128")


def test_sarif_validates_and_anchors_at_config_lines(report):
    doc = json.loads(render(report, "sarif"))
    jsonschema.Draft7Validator(SARIF_SCHEMA,
                               format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
                               ).validate(doc)
    run = doc["runs"][0]
    assert [r["id"] for r in run["tool"]["driver"]["rules"]] == [r.id for r in RULES]
    judged = [r for r in run["results"] if not r.get("properties", {}).get("notJudged")]
    assert len(judged) == len(report.findings)
    lars = next(r for r in run["results"] if r["ruleId"] == "LB008")
    loc = lars["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("timm-lars-nowarmup/args.yaml")
    line = (RUNS / "timm-lars-nowarmup" / "args.yaml").read_text().splitlines()[
        loc["region"]["startLine"] - 1]
    assert line.startswith("warmup_epochs:")
    assert {r["level"] for r in run["results"]} <= {"error", "warning", "note"}


def test_junit_one_testcase_per_rule_per_run(report):
    root = ET.fromstring(render(report, "junit"))
    suites = root.findall("testsuite")
    assert len(suites) == 3
    for s in suites:
        assert len(s.findall("testcase")) == len(RULES)
        assert int(s.get("failures")) == len(s.findall("testcase/failure"))
    adapted = suites[2]
    assert adapted.get("failures") == "0"


def test_json_round_trips_with_counts(report):
    doc = json.loads(render(report, "json"))
    assert doc["exit_code"] == 1
    assert sum(doc["counts"].values()) == len(report.findings)
    assert doc["runs"][0]["run"]["config"]["batch_size"]["value"] == 4096


def test_gitlab_code_quality_fields(report):
    issues = json.loads(render(report, "gitlab"))
    skipped = sum(len(r.skipped) for r in report.runs)
    assert len(issues) == len(report.findings) + skipped
    for i in issues:
        assert set(i) >= {"description", "check_name", "fingerprint", "severity", "location"}
        assert i["severity"] in ("info", "minor", "major", "critical", "blocker")
        assert i["location"]["lines"]["begin"] >= 1
    assert len({i["fingerprint"] for i in issues}) == len(issues)


def test_markdown_and_table_name_every_finding(report):
    md = render(report, "markdown")
    table = render(report, "table", width=200)
    for f in report.findings:
        assert f.rule_id in md and f.rule_id in table


def test_github_escaping_and_ten_per_level(report):
    assert escape_data("50%\nnext\r") == "50%25%0Anext%0D"
    assert escape_property("a:b,c") == "a%3Ab%2Cc"
    many = audit_runs([RUNS / "undertrained-bs4096"], baseline_dir=RUNS / "baseline-bs128")
    many.runs = many.runs * 3  # a run given twice is audited once: repeat its result instead
    text = render_github(many)
    lines = text.splitlines()
    assert sum(line.startswith("::warning ") for line in lines) == 10
    assert lines[-1].startswith("::notice title=lbconvert audit::")
    assert all("\n" not in line for line in lines)
    assert "::error file=" in text and ",line=" in text


@pytest.fixture(scope="module")
def unjudged():
    # no baseline: LB001, LB002 and others cannot run on these runs
    return audit_runs([RUNS / "undertrained-bs4096", RUNS / "adapted-bs4096"])


def _reasons(report):
    return [(run.history.path, rid, why) for run in report.runs
            for rid, why in run.skipped.items()]


@pytest.mark.parametrize("fmt", ["table", "json", "markdown", "sarif", "junit", "gitlab",
                                 "github"])
def test_every_format_carries_every_not_judged_rule_with_its_reason(unjudged, fmt):
    expected = _reasons(unjudged)
    assert {rid for _, rid, _ in expected} >= {"LB001", "LB002"}
    text = render(unjudged, fmt, width=400)
    if fmt in ("json", "sarif", "gitlab"):
        text = json.dumps(json.loads(text), ensure_ascii=False)  # reasons as plain strings
    elif fmt == "junit":
        text = ET.tostring(ET.fromstring(text), "unicode")
    elif fmt == "github":
        text = text.replace("%2C", ",").replace("%3A", ":").replace("%25", "%")
    for path, rid, why in expected:
        assert rid in text and why in text, (fmt, rid, why)


def test_sarif_not_judged_are_note_results_tied_to_the_rule(unjudged):
    doc = json.loads(render(unjudged, "sarif"))
    jsonschema.Draft7Validator(SARIF_SCHEMA).validate(doc)
    run = doc["runs"][0]
    expected = _reasons(unjudged)
    notes = [r for r in run["results"] if r.get("properties", {}).get("notJudged")]
    assert len(notes) == len(expected)
    assert len(run["results"]) == len(unjudged.findings) + len(expected)
    assert {r["level"] for r in notes} == {"note"}
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    for r in notes:
        assert rule_ids[r["ruleIndex"]] == r["ruleId"]
        assert r["message"]["text"].startswith(f"{r['ruleId']} not judged: ")
    assert "invocations" not in run  # every run was read: no tool notification
    assert len({r["partialFingerprints"]["lbconvert/v1"] for r in run["results"]}) == \
        len(run["results"])


def test_gitlab_not_judged_are_info_entries(unjudged):
    issues = json.loads(render(unjudged, "gitlab"))
    info = [i for i in issues if i["check_name"].endswith("-not-judged")]
    assert len(info) == len(_reasons(unjudged))
    assert {i["severity"] for i in info} == {"info"}
    assert len({i["fingerprint"] for i in issues}) == len(issues)


def test_github_one_notice_per_run_names_every_not_judged_rule(unjudged):
    lines = render_github(unjudged).splitlines()
    for run in unjudged.runs:
        mine = [ln for ln in lines if ln.startswith("::notice ")
                and "not judged" in ln and Path(run.history.path).name in ln]
        assert len(mine) == 1
        for rid in run.skipped:
            assert rid in mine[0].split("::", 2)[1]  # in the title
