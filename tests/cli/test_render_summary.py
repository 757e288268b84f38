"""The closing rich panel: verdict, key numbers, paths written."""

from __future__ import annotations

import math

from rich.console import Console

from lbconvert.cli.render_summary import render_summary
from lbconvert.report.build import write_report
from tests.helpers import make_export, make_result


def _render(result, files) -> str:
    console = Console(record=True, width=160, color_system=None)
    render_summary(result, files, console)
    return console.export_text()


def test_panel_with_smoke_and_files(tmp_path):
    result = make_result(smoke=True)
    result.export = make_export(tmp_path)
    files = write_report(result, result.export, tmp_path)
    text = _render(result, files)
    level = result.smoke.verdict.level
    assert f" {level} " in text.splitlines()[0]
    assert "128 → 8192 (M = 64, sqrt rule)" in text
    assert f"{result.plan.lr_old:g} → {result.plan.lr_new:.4g}" in text
    assert f"21 site(s), ghost batch {result.plan.ghost_batch_size}" in text
    v = result.smoke.verdict
    assert (f"converted / original: slope {v.slope_ratio:.2f}; final distance "
            f"{math.exp(v.final_gap):.2f}× the original's") in text
    assert "batch 1: |Δ| 2e-06 (rel 2e-07), batch 7: |Δ| 1e-06 (rel 1e-07)" in text
    for path in (files.json, files.md, files.html, str(tmp_path / "model.pt")):
        assert path in text


def test_panel_without_smoke_or_export():
    result = make_result(smoke=False)
    text = _render(result, None)
    assert " PASS " in text.splitlines()[0]
    assert "smoke test" in text and "not run" in text
    assert "none written (--no-export)" in text


def test_failed_verification_shows_fail():
    result = make_result(smoke=False)
    bad = next(c for c in result.verification.checks if c.name == "train_ghost_chunked")
    bad.passed, bad.value = False, 2e-3
    text = " ".join(_render(result, None).split())
    assert " FAIL " in text[:80]
    assert "verification failed: train_ghost_chunked 0.002 > 1e-05 (21 of 21 site(s)" in text
