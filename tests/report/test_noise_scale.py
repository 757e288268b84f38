"""The noise-scale measurement in the convert report (json/md/html, schema) and its one line."""

from __future__ import annotations

import html
import json

import jsonschema
import pytest

from lbconvert.errors import LbconvertError
from lbconvert.report.build import write_report
from lbconvert.report.noise_scale import load_noise_scale, noise_scale_line
from lbconvert.report.schema import REPORT_SCHEMA
from tests.helpers import make_result
from tests.helpers import noise_measurement as measurement


def test_line_puts_the_noise_scale_next_to_the_target_and_is_honest_about_synthetic_data():
    line = noise_scale_line(measurement(), 8192)
    assert line.startswith("noise scale B_simple ≈ 310 ± 40 (measured on synthetic data at the "
                           "original weights, end of the original arm (update 96)): target "
                           "8192 is 26× it")
    assert "beyond the noise scale, larger batches buy few extra steps" in line
    assert "McCandlish et al. 2018" in line and "3.8% above the fewest" in line  # 310/8192
    assert "says little about your data" in line and "--data" in line
    own = noise_scale_line(measurement("data.py:make", 12000.0, 3000.0), 8192)
    assert "measured on data data.py:make" in own and "12,000 ± 3,000" in own
    assert "0.68× it — below the noise scale" in own and "--data" not in own
    unresolved = noise_scale_line(measurement(b_simple=None, stderr=None), 8192)
    assert "not resolved" in unresolved and "well above 128" in unresolved


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_noise")
    result = make_result(smoke=True)
    result.smoke.noise_scale = measurement()
    files = write_report(result, None, out)
    return result, files


def test_report_json_holds_the_measurement_and_validates(report):
    result, files = report
    doc = json.loads(open(files.json, encoding="utf-8").read())
    jsonschema.validate(doc, REPORT_SCHEMA)
    ns = doc["smoke"]["noise_scale"]
    assert (ns["b_simple"], ns["stderr"], ns["b_small"], ns["b_big"]) == (310.0, 40.0, 2, 128)
    assert (ns["weights"], ns["mode"], ns["data"], ns["synthetic"]) == (
        "original", "train", "synthetic", True)
    assert [p["at"] for p in ns["points"]] == ["init", "end of the original arm"]
    assert ns["cost"] == {"passes": 512, "samples": 1024, "seconds": 3.0}
    assert ns["target_batch"] == doc["plan"]["target_batch"] == 8192
    assert ns["line"] == noise_scale_line(result.smoke.noise_scale, 8192)
    bad = json.loads(json.dumps(doc))
    bad["smoke"]["noise_scale"]["b_small"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, REPORT_SCHEMA)


def test_markdown_and_html_show_the_line_in_the_plan_section(report):
    _, files = report
    line = noise_scale_line(measurement(), 8192)
    md = open(files.md, encoding="utf-8").read()
    plan_md = md.split("### Plan", 1)[1].split("###", 1)[0]
    assert f"Gradient {line}." in plan_md
    page = open(files.html, encoding="utf-8").read()
    assert f"Gradient {html.escape(line)}." in page


def test_a_report_without_the_measurement_still_validates(tmp_path):
    files = write_report(make_result(smoke=True), None, tmp_path)
    doc = json.loads(open(files.json, encoding="utf-8").read())
    jsonschema.validate(doc, REPORT_SCHEMA)
    assert doc["smoke"]["noise_scale"] is None
    assert "B_simple" not in open(files.md, encoding="utf-8").read()


def test_load_noise_scale_reads_a_report_and_names_the_flag_on_errors(report, tmp_path):
    _, files = report
    ns, doc = load_noise_scale(files.json)
    assert ns["b_simple"] == 310.0 and doc["kind"] == "convert"
    cases = {"missing.json": None, "text.json": "not json", "list.json": "[1, 2]",
             "audit.json": json.dumps({"kind": "audit", "schema_version": "1.0"}),
             "nosmoke.json": json.dumps({"kind": "convert", "schema_version": "1.0",
                                         "smoke": {"run": False, "reason": "--no-smoke"}}),
             "old.json": json.dumps({"kind": "convert", "schema_version": "1.0",
                                     "smoke": {"run": True, "arms": {}}})}
    for name, text in cases.items():
        path = tmp_path / name
        if text is not None:
            path.write_text(text, encoding="utf-8")
        with pytest.raises(LbconvertError, match="--noise-scale-from") as err:
            load_noise_scale(path)
        assert "\n" not in str(err.value) and str(path) in str(err.value)
