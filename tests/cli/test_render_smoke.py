"""The smoke result's terminal rendering: every arm, the ratios, the verdict and calibration."""

from __future__ import annotations

import math

from rich.console import Console

from lbconvert.cli.render_smoke import render_smoke
from lbconvert.smoke.diffusion import Calibration
from lbconvert.smoke.verdict import decide
from tests.helpers import smoke_result as _result


def _render(result) -> str:
    console = Console(record=True, width=220)
    render_smoke(result, console)
    return console.export_text()


def test_render_shows_arms_verdict_and_cause():
    text = _render(_result([]))
    for name in ("original", "naive", "converted"):
        assert name in text
    slope = _result([]).arms["converted"].fit
    assert f"{slope.slope:.3g} [{slope.ci_low:.3g}, {slope.ci_high:.3g}]" in text
    assert "Smoke verdict: FAIL" in text and "LARS trust coefficient" in text
    assert "No common range of samples seen" in text
    assert "window t ∈ [50, 500]" in text and "note: CUDA not available" in text
    assert "Sharpness (Keskar 2017" in text and "1.5%" in text
    # where each arm ends (no plan horizon here: the window's last update, measured)
    d_orig = 1 + math.log(500)
    assert f"original {d_orig:.3g} at update 500;" in text and "(extrapolated)" not in text


def test_render_marks_extrapolated_end_distances():
    from lbconvert.smoke.verdict import Horizon

    result = _result([])
    a = result.arms
    result.verdict = decide(a["original"], a["naive"], a["converted"], (50, 500),
                            horizon=Horizon(64_000, 64_000, 1_000, "test"))
    text = _render(result)
    d = a["original"].fit.predict(64_000)
    assert f"original {d:.3g} at update 64,000 (extrapolated)" in text


def test_render_samples_table_and_calibration():
    cal = Calibration(12.0, 9.6, 96.0, 8.0, 8.0, 0.05, 40, [{"multiplier": 1.0}], 3.0)
    text = _render(
        _result(
            [
                {
                    "samples": 6400,
                    "t_original": 1600.0,
                    "t_large": 100,
                    "d_original": 5.0,
                    "d_naive": 3.0,
                    "d_converted": 4.0,
                    "converted/original": 0.8,
                    "naive/original": 0.6,
                }
            ],
            cal,
        )
    )
    assert "6,400" in text and "1600" in text
    assert "Calibrated LR multiplier: 12× the plan's LR → 9.6, 96× the original LR" in text
    assert "√M = 8" in text


def test_render_inconclusive_says_what_would_settle_it():
    result = _result([])
    for arm in result.arms.values():
        arm.steps, arm.step_time = 11, 0.2
    result.verdict = decide(result.arms["original"], result.arms["naive"],
                            result.arms["converted"], (50, 500))
    text = _render(result)
    assert "Smoke verdict: INCONCLUSIVE" in text and "only 11 updates" in text
    assert "to settle it:" in text and "--smoke-time" in text and "likely cause" not in text
