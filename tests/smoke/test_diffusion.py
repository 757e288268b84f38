"""Slope fits, windows, ratios and the verdict of lbconvert.smoke.diffusion on synthetic curves."""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.smoke.diffusion import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    WARN,
    Calibration,
    DiffusionResult,
)
from lbconvert.smoke.fit import fit_log_slope, interpolate_log_t, log_spaced_steps
from lbconvert.smoke.verdict import (
    MIN_CONCLUSIVE_UPDATES,
    Horizon,
    choose_window,
    curve_gap,
    decide,
    distance_ratios,
    extrapolation_note,
    horizon_for,
    predicted_distance,
    report_points,
)
from tests.helpers import curve_arm as _arm
from tests.helpers import fit_arm as _fit_arm


@settings(max_examples=40, deadline=None)
@given(slope=st.floats(0.01, 10), intercept=st.floats(-5, 5), total=st.integers(20, 5000))
def test_exact_log_curve_recovers_slope_and_intercept(slope, intercept, total):
    ts = log_spaced_steps(total)
    fit = fit_log_slope(ts, [intercept + slope * math.log(t) for t in ts], n_boot=50)
    assert fit.slope == pytest.approx(slope, rel=1e-9, abs=1e-9)
    assert fit.intercept == pytest.approx(intercept, rel=1e-9, abs=1e-8)
    # Noise-free points: every bootstrap resample has the same slope.
    assert fit.ci_low == pytest.approx(slope, rel=1e-9) and fit.ci_high == pytest.approx(
        slope, rel=1e-9
    )
    assert fit.r2 == pytest.approx(1.0)


def test_noisy_curve_ci_covers_true_slope_and_matches_numpy():
    import numpy as np

    rng = random.Random(3)
    ts = log_spaced_steps(2000, 60)
    ds = [0.5 + 1.3 * math.log(t) + rng.gauss(0, 0.05) for t in ts]
    fit = fit_log_slope(ts, ds, (10, 2000), n_boot=2000, seed=1)
    sel = [(math.log(t), d) for t, d in zip(ts, ds) if 10 <= t <= 2000]
    ref_slope, ref_icpt = np.polyfit([x for x, _ in sel], [y for _, y in sel], 1)
    assert fit.slope == pytest.approx(ref_slope, rel=1e-10)
    assert fit.intercept == pytest.approx(ref_icpt, rel=1e-10)
    assert fit.ci_low < 1.3 < fit.ci_high
    assert fit.ci_high - fit.ci_low < 0.1
    assert fit.window == (10, 2000) and fit.n_marks == len(sel)


def test_window_selects_the_part_of_a_bent_curve():
    # slope 2 up to t = 100, slope 0.5 after (continuous): the window decides the slope.
    def d(t):
        return 2 * math.log(min(t, 100)) + 0.5 * max(0.0, math.log(t / 100))

    ts = log_spaced_steps(5000, 80)
    ds = [d(t) for t in ts]
    assert fit_log_slope(ts, ds, (2, 100)).slope == pytest.approx(2.0)
    assert fit_log_slope(ts, ds, (100, 5000)).slope == pytest.approx(0.5)


def test_fit_needs_three_marks():
    with pytest.raises(ValueError, match="at least 3"):
        fit_log_slope([1, 2, 3, 4], [0.1, 0.2, 0.3, 0.4], (3, 4))


@settings(max_examples=50, deadline=None)
@given(total=st.integers(1, 100000), count=st.integers(2, 80))
def test_log_spaced_steps_properties(total, count):
    ts = log_spaced_steps(total, count)
    assert ts == sorted(set(ts))
    assert ts[0] == 1 and ts[-1] == total
    assert len(ts) <= max(count, 2) + 1


def test_interpolation_is_linear_in_log_t():
    ts = [1, 10, 100]
    ds = [0.0, 1.0, 2.0]  # d = log10 t
    assert interpolate_log_t(ts, ds, 10) == 1.0
    assert interpolate_log_t(ts, ds, 31.6227766) == pytest.approx(1.5)
    assert math.isnan(interpolate_log_t(ts, ds, 200))


def test_choose_window_after_warmup_and_flags_long_warmup():
    assert choose_window(1000, 50) == ((100, 1000), None)
    assert choose_window(1000, 300) == ((301, 1000), None)
    window, problem = choose_window(100, 80)
    assert window == (50, 100) and "warmup" in problem


def test_report_points():
    assert report_points(10000) == [10, 100, 1000, 10000]
    assert report_points(1) == [1]


def test_ratios_and_gap_against_hand_computation():
    orig = _arm("original", lambda t: 1 + math.log(t))
    conv = _arm("converted", lambda t: 0.5 * (1 + math.log(t)))
    r = distance_ratios(conv, orig, [1, 10, 1000])
    assert all(v == pytest.approx(0.5) for v in r.values())
    gap, bias = curve_gap(conv, orig, (10, 1000))
    assert gap == pytest.approx(math.log(2)) and bias == pytest.approx(-math.log(2))


def _three(conv_fn, **kw):
    window = (100, 1000)
    orig = _fit_arm(_arm("original", lambda t: 1 + math.log(t)), window)
    naive = _fit_arm(_arm("naive", lambda t: 0.9 + 0.8 * math.log(t)), window)
    conv = _fit_arm(_arm("converted", conv_fn, optimizer="lars (γ 0.8, η 0.001)"), window)
    return orig, naive, conv, window


def test_verdict_pass_when_curves_match():
    orig, naive, conv, window = _three(lambda t: 1.02 * (1 + math.log(t)))
    v = decide(orig, naive, conv, window, tolerance=0.2)
    assert v.level == PASS and v.likely_cause is None
    assert v.slope_ratio == pytest.approx(1.02)
    assert not v.ci_overlap  # noise-free curves: point CIs; the overlap no longer decides
    assert v.curve_gap == pytest.approx(math.log(1.02))
    assert v.curve_bias == pytest.approx(math.log(1.02))


def test_verdict_pass_on_the_matched_recipe_itself():
    # converted == original curve: the matched case of the fidelity benchmark.
    orig, naive, conv, window = _three(lambda t: 1 + math.log(t))
    v = decide(orig, naive, conv, window)
    assert v.level == PASS and v.curve_bias == pytest.approx(0.0)


def test_verdict_fail_on_the_naive_recipe():
    # The naive large batch run as the "converted" arm: identical curves, so it diffuses no
    # farther than naive and FAILs even though it is only ~20% below the original.
    orig, naive, conv, window = _three(lambda t: 0.9 + 0.8 * math.log(t))
    v = decide(orig, naive, conv, window)
    assert v.level == FAIL and "no farther than the naive" in v.reason
    assert v.curve_bias == pytest.approx(curve_gap(naive, orig, window)[1])


def test_verdict_fail_with_lars_cause_when_far_too_slow():
    orig, naive, conv, window = _three(lambda t: 0.1 * (1 + math.log(t)))
    v = decide(orig, naive, conv, window)
    assert v.level == FAIL
    assert "LARS trust coefficient" in v.likely_cause and "--calibrate" in v.likely_cause
    assert v.curve_bias < 0


def test_verdict_faster_diffusion_passes():
    # One-sided: in the benchmark, diffusing farther than the original never meant a worse
    # final accuracy (SGD at the √M rate diffused 1.3-1.7× farther and closed the gap).
    orig, naive, conv, window = _three(lambda t: 1.5 * (1 + math.log(t)))
    assert decide(orig, naive, conv, window, tolerance=0.2).level == PASS
    orig, naive, conv, window = _three(lambda t: 1 + math.log(t) + 7.0)
    assert decide(orig, naive, conv, window).level == PASS


def test_verdict_warn_between_pass_and_fail():
    window = (100, 1000)
    orig = _fit_arm(_arm("original", lambda t: 1 + math.log(t)), window)
    naive = _fit_arm(_arm("naive", lambda t: 0.5 * (1 + math.log(t))), window)
    conv = _fit_arm(_arm("converted", lambda t: 0.9 * (1 + math.log(t))), window)
    v = decide(orig, naive, conv, window, tolerance=0.2)
    # ln 0.9 = -0.105: below 0 (PASS), above -ln 1.2 (FAIL) and naive (ln 0.5) + ln 1.1.
    assert v.level == WARN and "LR too low" in v.likely_cause
    assert v.final_gap == pytest.approx(math.log(0.9))
    conv = _fit_arm(_arm("converted", lambda t: 0.78 * (1 + math.log(t))), window)
    assert decide(orig, naive, conv, window, tolerance=0.2).level == FAIL  # ln 0.78 < -ln 1.2


def _horizon(original: int, converted: int, naive: int) -> Horizon:
    return Horizon(original, converted, naive, "test")


def test_verdict_budget_regime_ends_short_although_it_diffuses_faster_per_update():
    # The benchmark's --regime budget arms: faster per update than the original (the old
    # per-update criterion said PASS), but M = 8× fewer updates, so they end short.
    window = (100, 1000)
    orig = _fit_arm(_arm("original", lambda t: 1 + math.log(t)), window)
    naive = _fit_arm(_arm("naive", lambda t: 0.5 * (1 + math.log(t))), window)
    conv = _fit_arm(_arm("converted", lambda t: 1.1 * (1 + math.log(t))), window)
    assert decide(orig, naive, conv, window).level == PASS  # same updates: ahead
    v = decide(orig, naive, conv, window, horizon=_horizon(1000, 125, 125))
    expect = math.log(1.1 * (1 + math.log(125)) / (1 + math.log(1000)))
    assert v.final_gap == pytest.approx(expect) and expect < -math.log1p(0.2)
    assert v.level == FAIL and "125 updates against 1000" in v.reason
    assert "--regime adapt" in v.likely_cause
    assert v.horizon == {"original": 1000, "converted": 125, "naive": 125, "source": "test"}
    assert v.naive_final_gap == pytest.approx(
        math.log(0.5 * (1 + math.log(125)) / (1 + math.log(1000))))
    # 1.3× per update ends within the tolerance below the original: WARN, not PASS
    conv = _fit_arm(_arm("converted", lambda t: 1.3 * (1 + math.log(t))), window)
    assert decide(orig, naive, conv, window, horizon=_horizon(1000, 125, 125)).level == WARN


def test_verdict_extrapolates_the_fitted_log_law_past_the_smoke_run():
    # Smoke runs 1000 updates; the real runs end at 100 000. Converted: same distance at
    # t = 1000 but half the slope, so it ends short of the original when extrapolated.
    window = (100, 1000)
    orig = _fit_arm(_arm("original", lambda t: 1 + math.log(t)), window)
    naive = _fit_arm(_arm("naive", lambda t: 0.5 * (1 + math.log(t))), window)
    at_end = 1 + math.log(1000)
    conv = _fit_arm(_arm("converted", lambda t: at_end + 0.5 * math.log(t / 1000)), window)
    assert decide(orig, naive, conv, window).final_gap == pytest.approx(0.0, abs=1e-12)
    v = decide(orig, naive, conv, window, horizon=_horizon(100_000, 100_000, 12_500))
    d_c = at_end + 0.5 * math.log(100)
    d_o = 1 + math.log(100_000)
    assert v.final_gap == pytest.approx(math.log(d_c / d_o))
    assert predicted_distance(conv, 100_000) == pytest.approx(d_c)
    assert predicted_distance(conv, 500) == pytest.approx(at_end + 0.5 * math.log(0.5))


def test_verdict_fails_a_converted_run_far_faster_than_the_original():
    orig, naive, conv, window = _three(lambda t: 12 * (1 + math.log(t)))
    v = decide(orig, naive, conv, window)
    assert v.level == FAIL and v.slope_ratio == pytest.approx(12)
    assert "LR too high" in v.likely_cause and "more than 10× faster" in v.reason
    orig, naive, conv, window = _three(lambda t: 9 * (1 + math.log(t)))
    assert decide(orig, naive, conv, window).level == PASS
    assert decide(orig, naive, conv, window, max_slope_ratio=8).level == FAIL


def test_extrapolation_note_only_past_what_the_benchmark_tested():
    assert extrapolation_note(_horizon(1280, 1280, 160), 200) is None  # 6.4×: the benchmark
    note = extrapolation_note(_horizon(64_124, 73_472, 1_148), 113)
    assert "650× past the smoke run's last update (113 → 73,472)" in note
    assert "--smoke-time" in note


def test_horizon_from_the_plan_and_without_a_dataset_size():
    from lbconvert.config.read import TrainConfig
    from lbconvert.plan.plan import make_plan

    cfg = TrainConfig(batch_size=16, lr=0.1, epochs=10, optimizer="sgd", momentum=0.9,
                      dataset_size=2048)
    adapt = horizon_for(make_plan(cfg, 128), 200)
    assert (adapt.original, adapt.converted, adapt.naive) == (1280, 1280, 160)
    budget = horizon_for(make_plan(cfg, 128, regime="budget"), 200)
    assert (budget.original, budget.converted, budget.naive) == (1280, 160, 160)
    unknown = TrainConfig(batch_size=16, lr=0.1, epochs=10, optimizer="sgd", momentum=0.9)
    h = horizon_for(make_plan(unknown, 128, regime="budget"), 200)
    assert (h.original, h.converted, h.naive) == (200, 25, 25) and "unknown" in h.source
    h = horizon_for(make_plan(unknown, 128), 200)
    assert (h.original, h.converted) == (200, 200)


def test_verdict_uses_whole_curve_not_only_slope():
    # Same slope, but the converted curve sits far below the original everywhere.
    window = (100, 1000)
    orig = _fit_arm(_arm("original", lambda t: 8 + math.log(t)), window)
    naive = _fit_arm(_arm("naive", lambda t: 7.5 + math.log(t)), window)
    conv = _fit_arm(_arm("converted", lambda t: 1 + math.log(t)), window)
    v = decide(orig, naive, conv, window)
    assert v.slope_ratio == pytest.approx(1.0)
    assert v.level == FAIL


def test_verdict_inconclusive_for_window_inside_warmup_and_fails_on_divergence():
    orig, naive, conv, window = _three(lambda t: 1 + math.log(t))
    v = decide(orig, naive, conv, window, window_problem="warmup (900 updates) covers ...")
    assert v.level == INCONCLUSIVE and "warmup too long" in v.likely_cause
    conv.diverged = True
    assert decide(orig, naive, conv, window).level == FAIL


def test_verdict_inconclusive_when_original_does_not_diffuse():
    window = (100, 1000)
    orig = _fit_arm(_arm("original", lambda t: 1.0 - 0.01 * math.log(t)), window)
    naive = _fit_arm(_arm("naive", lambda t: 1.0), window)
    conv = _fit_arm(_arm("converted", lambda t: 1 + math.log(t)), window)
    assert decide(orig, naive, conv, window).level == INCONCLUSIVE


def test_verdict_inconclusive_with_too_few_updates_and_says_what_would_settle_it():
    steps = MIN_CONCLUSIVE_UPDATES - 1
    window = (5, steps)
    arms = []
    for name, fn in (("original", lambda t: 1 + math.log(t)),
                     ("naive", lambda t: 0.5 + 0.5 * math.log(t)),
                     ("converted", lambda t: 1 + math.log(t))):
        arm = _fit_arm(_arm(name, fn, steps=steps), window)
        arm.step_time = 0.1
        arms.append(arm)
    v = decide(*arms, window)
    assert v.level == INCONCLUSIVE
    assert f"{steps} updates" in v.reason and "--smoke-time" in v.likely_cause
    # 50 updates × 0.3 s of the three arms × 1.05 / 0.85 × 1.2 = 22 s, rounded up to 30
    assert "--smoke-time 30 " in v.likely_cause
    assert decide(*arms, window, min_updates=steps).level == PASS


def test_result_to_dict_is_strict_json_with_plot_fields():
    orig, naive, conv, window = _three(lambda t: 0.5 * (1 + math.log(t)))
    conv.marks[-1].loss = float("nan")
    verdict = decide(orig, naive, conv, window)
    cal = Calibration(
        2.0,
        1.6,
        16.0,
        8.0,
        8.0,
        0.01,
        100,
        [{"multiplier": 1.0, "gap": float("inf"), "bias": -1.0, "steps": 100}],
        1.0,
    )
    res = DiffusionResult(
        arms={"original": orig, "naive": naive, "converted": conv},
        window=window,
        ratios={"x": float("nan")},
        by_updates=[],
        by_samples=[],
        verdict=verdict,
        proxy={},
        device="cpu",
        timings={"total": 1.0},
        data="synthetic",
        seed=0,
        calibration=cal,
    )
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["arms"]["converted"]["curve"]["loss"][-1] is None
    assert d["calibration"]["trials"][0]["gap"] is None
    line = d["fit_lines"]["original"]
    assert line["t"] == [100, 1000]
    assert line["distance"][1] == pytest.approx(1 + math.log(1000))
    assert set(d["arms"]["original"]["curve"]) >= {"t", "distance", "groups", "loss", "samples"}
    assert "updates" in d["comparison_basis"]


def test_cause_is_lr_level_when_curve_far_below_even_if_slope_is_steeper():
    # The original saturates (small slope) while the converted curve climbs from far below.
    window = (100, 1000)
    orig = _fit_arm(_arm("original", lambda t: 60 + 0.5 * math.log(t)), window)
    naive = _fit_arm(_arm("naive", lambda t: 20 + 0.4 * math.log(t)), window)
    conv = _fit_arm(_arm("converted", lambda t: 4 * math.log(t), optimizer="lars (γ 0.5)"), window)
    v = decide(orig, naive, conv, window)
    assert v.level == FAIL and v.slope_ratio > 1 and v.curve_bias < -math.log1p(0.4)
    assert "LR too low for LARS trust coefficient" in v.likely_cause


@pytest.mark.parametrize("b_s, suggested", [(2, None), (16, 4), (64, 16)])
def test_inconclusive_hint_suggests_a_smaller_smoke_batch_only_when_one_exists(b_s, suggested):
    steps = MIN_CONCLUSIVE_UPDATES - 1
    window = (5, steps)
    arms = []
    for name in ("original", "naive", "converted"):
        arm = _fit_arm(_arm(name, lambda t: 1 + math.log(t), steps=steps), window)
        arm.step_time = 0.1
        arms.append(arm)
    arms[0].batch = b_s
    hint = decide(*arms, window).likely_cause
    if suggested is None:
        assert "--smoke-batch" not in hint
    else:
        assert f"--smoke-batch {suggested} (now {b_s})" in hint
