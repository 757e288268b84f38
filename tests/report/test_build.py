"""Report stage: report.json against its schema, report.md, self-contained report.html."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert._json import json_safe
from lbconvert.errors import LbconvertError
from lbconvert.report.build import (
    SCHEMA_VERSION,
    build_report,
    lr_curves,
    write_report,
)
from lbconvert.report.schema import REPORT_SCHEMA
from tests.conftest import EXAMPLE_CONFIG, EXAMPLE_MODEL, ROOT
from tests.helpers import TRUE_LINES, make_export, make_result


@pytest.fixture(scope="module")
def with_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_smoke")
    result = make_result(smoke=True, overrides={"lr": 0.2})
    export = make_export(out)
    files = write_report(result, export, out)
    return result, files


@pytest.fixture(scope="module")
def without_smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("report_plain")
    result = make_result(smoke=False, overrides={"lr": 0.2})
    files = write_report(result, None, out)
    return result, files


def _load(files):
    return json.loads(open(files.json, encoding="utf-8").read())


def test_json_validates_against_schema(with_smoke, without_smoke):
    for _, files in (with_smoke, without_smoke):
        doc = _load(files)
        jsonschema.validate(doc, REPORT_SCHEMA)
        assert doc["schema_version"] == SCHEMA_VERSION == "1.0"
        assert doc["tool"]["name"] == "lbconvert"
        assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", doc["created"])


def test_json_fields_and_types(with_smoke):
    result, files = with_smoke
    doc = _load(files)
    inp = doc["input"]
    assert inp["model_spec"] == str(EXAMPLE_MODEL) and inp["input_shape"] == [3, 32, 32]
    assert inp["config"] == {"path": str(EXAMPLE_CONFIG), "format": result.config.format,
                             "file_type": "yaml"}
    assert inp["overrides"] == {"lr": 0.2}
    assert inp["config_sources"]["lr"].startswith("flag")
    assert inp["parameters"] == sum(p.numel() for p in result.original.parameters())
    plan = doc["plan"]
    assert plan["source_batch"] == 128 and plan["target_batch"] == 8192
    assert plan["lr_new"] == pytest.approx(0.2 * 8)  # √64 × the overridden LR
    lr_change = next(c for c in plan["changes"] if c["field"] == "lr")
    assert lr_change["old"] == pytest.approx(0.2) and isinstance(lr_change["reason"], str)
    assert doc["surgery"]["converted"] == 21 and len(doc["surgery"]["rows"]) == 21
    # The verify stage's own account (a real run, not a hand-written Verification) agrees
    # with the surgery table the report prints beside it.
    assert doc["verification"]["passed"] is True
    assert doc["verification"]["sites"] == doc["surgery"]["converted"]
    assert doc["verification"]["ghost_batch_size"] == result.plan.ghost_batch_size
    assert "sites_accounted" in {c["name"] for c in doc["verification"]["checks"]}
    assert doc["export"]["onnx"]["parity"] == {"batch 1": 2e-6, "batch 7": 1e-6}
    assert doc["export"]["onnx"]["relative"] == {"batch 1": 2e-7, "batch 7": 1e-7}
    assert doc["timings"] == {"plan": 0.001, "rewrite": 0.2}
    env = doc["environment"]
    assert isinstance(env["python"], str) and env["torch"] and env["device"]
    # Verify, smoke (converted slope 0.41 vs original 0.40) and export all pass: PASS.
    assert doc["verdict"]["level"] == "PASS" and doc["verdict"]["ok"] is True
    assert {c["stage"] for c in doc["verdict"]["checks"]} == {"verify", "smoke", "export"}


def test_smoke_fits_match_an_independent_least_squares(with_smoke):
    doc = _load(with_smoke[1])
    smoke = doc["smoke"]
    assert smoke["run"] is True
    lo, hi = smoke["window"]
    for name, arm in smoke["arms"].items():
        t = np.array(arm["curve"]["t"], dtype=float)
        d = np.array(arm["curve"]["distance"])
        keep = (t >= lo) & (t <= hi)
        slope, intercept = np.polyfit(np.log(t[keep]), d[keep], 1)
        assert arm["fit"]["slope"] == pytest.approx(slope, rel=1e-9)
        assert arm["fit"]["intercept"] == pytest.approx(intercept, rel=1e-9)
        assert arm["fit"]["slope"] == pytest.approx(TRUE_LINES[name][1], abs=0.02)


def test_smoke_not_run_is_explicit(without_smoke):
    doc = _load(without_smoke[1])
    assert doc["smoke"]["run"] is False and "not run" in doc["smoke"]["reason"]
    assert doc["export"] is None
    assert [c["stage"] for c in doc["verdict"]["checks"]] == ["verify"]


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_html_is_self_contained_with_plots(with_smoke):
    _, files = with_smoke
    html = open(files.html, encoding="utf-8").read()
    assert files.plots == ["diffusion", "loss", "lr_schedule"]
    images = _images(html)
    assert len(images) == 3
    assert all(img.startswith(b"\x89PNG\r\n\x1a\n") and len(img) > 5000 for img in images)
    assert not re.search(r"https?://|src=\"//|<script|<link|@import|url\(", html)
    # Tables for plan and surgery, the smoke slopes, the ONNX parity.
    for text in ("lr", "batch_size", "layer3.2.bn2", "GhostBatchNorm", "converted",
                 "slope b", "max |ONNX − PyTorch|"):
        assert text in html


def test_html_without_smoke_says_so_and_has_only_the_schedule(without_smoke):
    _, files = without_smoke
    html = open(files.html, encoding="utf-8").read()
    assert files.plots == ["lr_schedule"]
    assert len(_images(html)) == 1
    assert "<b>Not run</b>" in html


def test_markdown_headline_and_tables(with_smoke, without_smoke):
    result, files = with_smoke
    md = open(files.md, encoding="utf-8").read()
    first = md.splitlines()[0]
    assert first.startswith("## lbconvert: cifar_resnet: batch 128 → 8192")
    assert "**Verdict:" in md
    assert "| setting | old | new | why |" in md
    for change in result.plan.changes:
        assert f"| {change.field} |" in md
    assert "| arm | batch | LR |" in md and "| converted |" in md
    assert "max|ONNX − PyTorch| ≤ atol + rtol·max|PyTorch|" in md and "(rel " in md
    md_plain = open(without_smoke[1].md, encoding="utf-8").read()
    assert "### Smoke test (weight diffusion)\nNot run:" in md_plain


def test_refuses_existing_report_without_force(without_smoke, tmp_path):
    result, _ = without_smoke
    (tmp_path / "report.html").write_text("keep me")
    with pytest.raises(LbconvertError, match=r"report\.html.*--force"):
        write_report(result, None, tmp_path)
    # Nothing was written: the check happens before the first file.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    files = write_report(result, None, tmp_path, force=True)
    assert "keep me" not in open(files.html).read()


def test_failures_make_the_verdict_fail(tmp_path):
    result = make_result(smoke=False)
    result.verification.checks[0].passed = False
    doc = build_report(result, None)
    assert doc["verdict"]["level"] == "FAIL" and doc["verdict"]["ok"] is False
    result = make_result(smoke=False)
    export = make_export(tmp_path)
    export.onnx.parity = {2: 3e-3, 5: 1e-6}
    export.onnx.ok, export.ok = False, False
    export.onnx.error = export.error = "ONNX Runtime output differs from PyTorch by up to 0.003"
    doc = build_report(result, export)
    assert doc["verdict"]["level"] == "FAIL"
    assert "0.003" in doc["verdict"]["checks"][-1]["summary"]


def test_lr_curves_match_the_closed_form(with_smoke):
    result, _ = with_smoke
    plan = result.plan
    curves = lr_curves(plan, result.config, points=101)
    assert curves["old"]["epochs"] == 164 and curves["new"]["epochs"] == 164 * 64
    old = dict(zip(curves["old"]["epoch"], curves["old"]["lr"]))
    # Multistep 81/122, gamma 0.1, base LR 0.2 (overridden): independent arithmetic.
    for epoch, lr in old.items():
        expected = 0.2 * 0.1 ** ((epoch >= 81) + (epoch >= 122))
        assert lr == pytest.approx(expected, rel=1e-9), epoch
    new = list(zip(curves["new"]["epoch"], curves["new"]["lr"]))
    end_warm = plan.warmup_epochs
    after = [lr for e, lr in new if end_warm <= e < plan.milestones_new[0]]
    assert after and all(lr == pytest.approx(plan.lr_new) for lr in after)
    assert new[-1][1] == pytest.approx(plan.lr_new * 0.01)


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=60, deadline=None)
@given(_json_values)
def test_json_safe_gives_strict_json(value):
    safe = json_safe(value)
    text = json.dumps(safe, allow_nan=False)
    assert json_safe(json.loads(text)) == safe


def test_report_modules_import_without_torch_or_matplotlib():
    code = ("import sys, lbconvert.report.build, lbconvert.report.markdown, lbconvert.report.html, "
            "lbconvert.report.plots, lbconvert.report.schema, lbconvert.export.checkpoint, "
            "lbconvert.export.onnx, lbconvert.atomic; "
            "bad = [m for m in ('torch', 'matplotlib', 'onnx', 'onnxruntime') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_inconclusive_smoke_has_its_own_headline_not_ready_and_not_the_raw_word():
    import dataclasses

    from lbconvert.report.build import overall_verdict

    result = make_result(smoke=True)
    result.smoke.verdict = dataclasses.replace(
        result.smoke.verdict, level="INCONCLUSIVE",
        reason="12 updates per arm: too few to fit a slope (50 needed)",
        likely_cause="run with --smoke-time 240")
    verdict = overall_verdict(result, None)
    assert verdict["level"] == "INCONCLUSIVE"
    assert "too short to judge" in verdict["headline"]
    assert "ready for the large batch" not in verdict["headline"]
    assert not verdict["headline"].endswith("INCONCLUSIVE")
    # a WARN or FAIL elsewhere still decides the overall level
    result.verification.checks[0].passed = False
    assert overall_verdict(result, None)["level"] == "FAIL"


def test_a_smoke_test_asked_for_but_not_run_is_never_a_pass():
    from lbconvert.report.build import overall_verdict

    result = make_result(smoke=False)
    assert overall_verdict(result, None)["level"] == "PASS"  # --no-smoke: the user's choice
    result.notes.append("smoke test not run: about 875s predicted on cpu; pass --smoke-time 292")
    verdict = overall_verdict(result, None)
    assert verdict["level"] == "INCONCLUSIVE"
    assert any(c["stage"] == "smoke" and "--smoke-time 292" in c["summary"]
               for c in verdict["checks"])
