"""Each rule firing and not firing, on small histories built here; trend maths vs numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lbconvert.audit.analyze.findings import Baseline
from lbconvert.audit.analyze.trend import fit, fit_log
from lbconvert.audit.history import RunHistory
from lbconvert.audit.pipeline import analyze
from tests.helpers import audit_run as run
from tests.helpers import check_rule as check


def series(h: RunHistory, tag: str, steps, values) -> None:
    for s, v in zip(steps, values):
        h.add_scalar(tag, float(s), float(v))


BASE = Baseline(batch_size=128, source="b", lr=0.1, epochs=90, updates=64000)


def test_updates_rule_fires_with_plan_fix_and_not_when_adapted():
    r = check("LB001", run(updates=2000, epochs=90.0), BASE)
    f = r.findings[0]
    assert f.severity == "error" and f.evidence["M"] == 32
    assert f.evidence["updates_ratio"] == pytest.approx(2000 / 64000, rel=1e-3)
    assert "90 → 2880 (×32" in f.fix
    assert check("LB001", run(updates=64000), BASE).findings == []
    # adapted (√M LR, warmup) at 78% of the updates: a warning; unscaled: see the bounds below
    assert check("LB001", run(updates=50000, lr=0.1 * math.sqrt(32), warmup_epochs=5.0),
                 BASE).findings[0].severity == "warning"
    assert check("LB001", run()).skipped


def test_reference_batch_alone_assumes_same_epochs_and_says_so():
    base = Baseline(batch_size=256, source="--reference-batch 256", length_assumed=True)
    f = check("LB001", run(batch=2048, updates=1000), base).findings[0]
    assert f.evidence["baseline_updates"] == 8000  # 1000 updates × M = 8
    assert f.severity == "warning" and "assumed" in f.message
    # without the assumption and without a length there is nothing to compare
    assert check("LB001", run(batch=2048, updates=1000),
                 Baseline(batch_size=256, source="x")).skipped


def test_reference_epochs_give_the_reference_length():
    # issue 13: adapted run, batch 512, 640 epochs of a 1500-sample set = 1920 updates;
    # reference batch 16 for 20 epochs = 20 × ⌈1500/16⌉ = 1880 updates: no finding.
    base = Baseline(batch_size=16, source="ref", epochs=20)
    assert check("LB001", run(batch=512, updates=1920, dataset_size=1500), base).findings == []
    naive = check("LB001", run(batch=512, updates=60, dataset_size=1500), base).findings[0]
    assert naive.evidence["baseline_updates"] == 20 * math.ceil(1500 / 16)
    assert naive.severity == "error"


def test_update_counts_judged_without_any_batch_size():
    h = run(batch=None, updates=60)
    f = check("LB001", h, Baseline(batch_size=None, source="b", updates=1880)).findings[0]
    assert f.severity == "error"
    assert f.evidence["updates_ratio"] == pytest.approx(60 / 1880, abs=1e-6)
    assert "M is not checked" in f.message and "1,880 updates" in f.fix
    assert check("LB001", run(batch=None, updates=1920),
                 Baseline(batch_size=None, source="b", updates=1880)).findings == []


def test_unknown_batch_is_a_warning_naming_the_flag():
    f = check("LB011", run(batch=None, updates=60), None).findings[0]
    assert f.severity == "warning" and "--batch-size" in f.fix
    g = check("LB011", run(batch=512), Baseline(batch_size=None, source="b")).findings[0]
    assert "--reference-batch" in g.fix and "baseline's batch size" in g.message
    assert check("LB011", run(batch=512), BASE).findings == []


def test_lr_rule_bounds_sqrt_half_and_twice_linear():
    M = 32
    lo, hi = 0.5 * math.sqrt(M) * 0.1, 2 * M * 0.1
    assert check("LB002", run(lr=lo * 0.99), BASE).findings
    assert not check("LB002", run(lr=lo * 1.01), BASE).findings
    assert not check("LB002", run(lr=hi * 0.99), BASE).findings
    f = check("LB002", run(lr=hi * 1.01), BASE).findings[0]
    assert f.line == 3 and f.file == "cfg.yaml"
    assert "0.5657" in check("LB002", run(lr=0.1), BASE).findings[0].fix  # 0.1·√32


def test_warmup_rule_uses_logged_lr_ramp_or_config():
    h = run(lr=0.5)
    series(h, "lr", range(1, 11), [0.5] * 10)
    h.finalize()
    f = check("LB003", h, BASE).findings[0]
    assert "160 epochs" in f.fix  # Goyal's 5 epochs × M=32 (regime), from make_plan
    ramp = run(lr=0.5)
    series(ramp, "lr", range(1, 11), [0.05 * i for i in range(1, 11)])
    ramp.finalize()
    assert not check("LB003", ramp, BASE).findings
    assert not check("LB003", run(warmup_epochs=5.0), BASE).findings
    assert not check("LB003", run(batch=512, warmup_epochs=0.0)).findings  # not large


def _diffusing(h, steps, drop, rate):
    lr = [1.0 if s < drop else 0.1 for s in steps]
    series(h, "lr", steps, lr)
    series(h, "weight_distance", steps, [rate * math.log(1 + s) for s in steps])


def test_lr_drop_rule_distance_vs_baseline():
    steps = list(range(10, 5000, 10))
    h = run()
    _diffusing(h, steps, 1000, 0.5)
    h.finalize()
    b = run(batch=128)
    _diffusing(b, steps, 3000, 1.0)
    b.finalize()
    base = Baseline(128, "b", 0.1, 90, 5000, history=b)
    f = check("LB004", h, base).findings[0]
    assert f.severity == "warning" and f.evidence_strength == "direct"
    assert f.evidence["lr_drop_update"] == 1000
    assert f.evidence["slope_per_ln_t_late"] == pytest.approx(0.5, rel=0.05)
    # no baseline: still growing → a note only
    assert check("LB004", h).findings[0].severity == "note"
    # saturated distance before the drop: nothing
    sat = run()
    series(sat, "lr", steps, [1.0 if s < 1000 else 0.1 for s in steps])
    series(sat, "weight_distance", steps, [1 - math.exp(-s / 50) for s in steps])
    sat.finalize()
    assert not check("LB004", sat).findings


def test_lr_drop_rule_loss_fallback_is_labelled_weaker():
    steps = list(range(10, 3000, 10))
    h = run()
    series(h, "lr", steps, [1.0 if s < 1000 else 0.1 for s in steps])
    series(h, "train_loss", steps, [3 - 0.3 * math.log(s) for s in steps])
    h.finalize()
    f = check("LB004", h).findings[0]
    assert f.evidence_strength == "weaker" and "weaker evidence" in f.message


def test_loss_still_falling_fires_on_log_decline_not_on_plateau():
    steps = list(range(1, 1001))
    rng = np.random.default_rng(0)
    h = run(updates=1000)
    series(h, "train_loss", steps, 2 - 0.2 * np.log(steps) + rng.normal(0, 0.005, 1000))
    h.finalize()
    f = check("LB005", h).findings[0]
    assert f.evidence["slope_per_ln_t"] == pytest.approx(-0.2, rel=0.1)
    flat = run(updates=1000)
    series(flat, "train_loss", steps, 0.5 + rng.normal(0, 0.005, 1000))
    flat.finalize()
    assert not check("LB005", flat).findings


def test_bn_batch_rule_threshold_and_ghost():
    assert check("LB006", run(batch=4096, devices=8, grad_accum=2)).findings  # 256/device
    assert not check("LB006", run(batch=4096, devices=32)).findings  # 128/device
    assert not check("LB006", run(batch=4096, ghost_batch_size=128)).findings


def test_gap_rule():
    steps = list(range(100, 2100, 100))
    h = run()
    series(h, "train_loss", steps, [1.0] * len(steps))
    series(h, "val_loss", steps, [1.1 + 0.0005 * s for s in steps])
    h.finalize()
    f = check("LB007", h).findings[0]
    assert f.evidence["gap_end"] == pytest.approx(0.1 + 0.0005 * 2000, rel=1e-6)
    flat = run()
    series(flat, "train_loss", steps, [1.0] * len(steps))
    series(flat, "val_loss", steps, [1.1 + 0.001 * (i % 2) for i in range(len(steps))])
    flat.finalize()
    assert not check("LB007", flat).findings


def test_lars_without_warmup_and_nonfinite():
    assert check("LB008", run(optimizer="lars", warmup_epochs=0.0)).findings
    assert not check("LB008", run(optimizer="lars", warmup_epochs=5.0)).findings
    assert not check("LB008", run(optimizer="sgd", warmup_epochs=0.0)).findings
    h = run()
    series(h, "loss", [1, 2, 3], [1.0, float("nan"), float("inf")])
    h.finalize()
    f = check("LB009", h).findings[0]
    assert f.evidence["first_update"] == 2 and f.severity == "error"
    ok = run()
    series(ok, "loss", [1, 2], [1.0, 0.5])
    assert not check("LB009", ok.finalize()).findings


def test_analyze_records_skipped_rules():
    a = analyze(run(batch=128))
    assert "LB001" in a.skipped and a.findings == []


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=3, max_size=40),
       st.floats(-5, 5), st.floats(-5, 5))
def test_fit_matches_numpy_polyfit(noise, a, b):
    xs = [float(i) for i in range(len(noise))]
    ys = [a + b * x + 0.01 * n for x, n in zip(xs, noise)]
    s = fit(xs, ys)
    coef = np.polyfit(xs, ys, 1)
    assert s.slope == pytest.approx(coef[0], abs=1e-7)
    assert s.intercept == pytest.approx(coef[1], abs=1e-6)


def test_fit_log_stderr_matches_scipy():
    from scipy import stats

    steps = [1, 2, 5, 10, 20, 50, 100]
    vals = [3.0, 2.7, 2.4, 2.1, 1.95, 1.6, 1.4]
    s = fit_log(steps, vals)
    ref = stats.linregress(np.log(steps), vals)
    assert s.slope == pytest.approx(ref.slope) and s.stderr == pytest.approx(ref.stderr)


# ---- LB001's bounds come from measured runs (issue 22) -------------------------------------

from lbconvert.audit.analyze import evidence  # noqa: E402
from lbconvert.audit.analyze.rules import noop_change  # noqa: E402
from lbconvert.audit.pipeline import audit_runs  # noqa: E402
from tests.conftest import ROOT  # noqa: E402

REAL = ROOT / "fixtures" / "real"


def test_evidence_rows_are_the_fidelity_benchmarks_rows():
    """evidence.MEASURED is what benchmarks/audit_thresholds.py derives from docs/fidelity."""
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import audit_thresholds as at

    table = at.arm_table(at.load_rows([at.ROWS / f for f in at.FILES]))
    rows = at.pooled(table)
    assert tuple(rows) == evidence.MEASURED
    assert at.bounds(rows) == {k: evidence.error_share(k) for k in ("adapted", "unscaled")}
    # the naive arm closes 0% by definition: unscaled runs at 1/M are never "enough"
    assert evidence.error_share("unscaled") > 0.125


def _adapted(updates, lr=0.1 * math.sqrt(32), warmup=True):
    h = run(updates=updates, lr=lr, warmup_epochs=5.0 if warmup else 0.0)
    return h


def test_adapted_run_is_an_error_only_below_the_measured_share():
    lo = evidence.error_share("adapted")
    above = check("LB001", _adapted(64000 * lo * 1.05), BASE).findings[0]
    assert above.severity == "warning" and above.evidence["adaptation"] == "adapted"
    seen = evidence.nearest_below("adapted", above.evidence["updates_ratio"])
    assert seen.text() in above.message and "docs/audit-rules.md" in above.message
    assert check("LB001", _adapted(64000 * lo * 0.9), BASE).findings[0].severity == "error"
    # the same share without warmup, or at the baseline's LR, is unscaled: an error
    for h in (_adapted(64000 * lo * 1.05, warmup=False), _adapted(64000 * lo * 1.05, lr=0.1)):
        f = check("LB001", h, BASE).findings[0]
        assert f.severity == "error" and f.evidence["adaptation"] == "unscaled"


def test_unscaled_run_is_an_error_below_its_measured_bound_and_a_warning_above():
    hi = evidence.error_share("unscaled")
    assert check("LB001", run(updates=64000 * hi * 0.95), BASE).findings[0].severity == "error"
    if hi < evidence.UPDATES_WARNING:
        f = check("LB001", run(updates=64000 * hi * 1.01), BASE).findings[0]
        assert f.severity == "warning"


def _summarywriter_run(d, recipe):
    """One run in make_runs_real.py's SummaryWriter layout, from its own training loop."""
    import yaml
    from torch.utils.tensorboard import SummaryWriter

    from fixtures.make_runs_real import N, plain_training

    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump(
        {"model": "mlp", **recipe, "optimizer": "sgd", "momentum": 0.9,
         "weight_decay": 1e-4, "dataset_size": N}, sort_keys=False))
    w = SummaryWriter(str(d))

    def log(u, loss, lr, dist):
        w.add_scalar("Loss/train", loss, u)
        w.add_scalar("lr", lr, u)
        w.add_scalar("train/weight_distance", dist, u)

    plain_training(recipe, log, 10)
    w.close()
    return d


@pytest.mark.slow
def test_x8_adapted_run_is_no_error_and_the_naive_run_still_is(tmp_path):
    # issue 22: batch 16 → 512 (M = 32) with √M LR, warmup and ×8 epochs = 25% of the
    # baseline's updates (160 epochs × 3 = 480 of 1880)
    x8 = _summarywriter_run(tmp_path / "adapted-x8", {
        "batch_size": 512, "lr": round(0.05 * math.sqrt(32), 6), "epochs": 160,
        "warmup_epochs": 8})
    report = audit_runs([x8, REAL / "summarywriter" / "naive"],
                        baseline_dir=REAL / "summarywriter" / "baseline")
    adapted, naive = (next(f for f in r.findings if f.rule_id == "LB001") for r in report.runs)
    assert adapted.evidence["updates"] == 480 and adapted.evidence["adaptation"] == "adapted"
    assert adapted.severity == "warning" and "closed" in adapted.message
    assert naive.severity == "error" and naive.evidence["adaptation"] == "unscaled"
    assert report.exit_code == 1  # the naive run
    solo = audit_runs([x8], baseline_dir=REAL / "summarywriter" / "baseline")
    assert solo.exit_code == 0 and not any(f.severity == "error" for f in solo.findings)


def test_damaged_event_file_gives_at_least_n_updates_and_no_noop_fix(tmp_path):
    src = REAL / "summarywriter" / "adapted"
    run_dir = tmp_path / "adapted"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_bytes((src / "config.yaml").read_bytes())
    ev = next(src.glob("events.out.tfevents.*"))
    data = bytearray(ev.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte mid-file: a CRC error
    (run_dir / ev.name).write_bytes(bytes(data))
    report = audit_runs([run_dir], baseline_dir=REAL / "summarywriter" / "baseline")
    (audit,) = report.runs
    assert audit.history.damage and audit.history.total_updates < 1920
    f = next(f for f in audit.findings if f.rule_id == "LB001")
    n = audit.history.total_updates
    assert f.message.startswith(f"at least {n:.0f} updates")
    assert f.severity == "warning" and f.evidence["updates_lower_bound"] is True
    assert "640 → 640" not in f.fix and "restore the damaged event file" in f.fix
    assert any(g.rule_id == "LB012" for g in audit.findings)


def test_noop_change_detects_a_fix_to_the_current_value():
    assert noop_change("epochs 640 → 640 (×32, regime adaptation)") == "640 → 640"
    assert noop_change("drop the LR later: milestones [30, 60] → [30, 60] epochs")
    assert noop_change("epochs 640 → 6400") is None
    assert noop_change("lr 0.1 → 0.1414") is None and noop_change("warmup 0 → 5") is None
    assert noop_change("milestones [30, 60] → [30, 600]") is None


def _dropping(batch, milestones, steps, drop):
    h = run(batch=batch, milestones=milestones, epochs=90.0)
    _diffusing(h, steps, drop, 0.5)
    return h.finalize()


def test_lb004_never_proposes_the_milestones_the_run_has():
    steps = list(range(10, 5000, 10))
    b = run(batch=128, milestones=[30, 60], epochs=90.0)
    _diffusing(b, steps, 3000, 1.0)
    b.finalize()
    base = Baseline(128, "b", 0.1, 90, 5000, history=b)
    # M = 1: the plan repeats the run's milestones
    same_batch = check("LB004", _dropping(128, [30, 60], steps, 1000), base).findings[0]
    assert "[30, 60] → [30, 60]" not in same_batch.fix and noop_change(same_batch.fix) is None
    assert "already the adapted ones" in same_batch.fix
    # M = 32 with the milestones already adapted (×32): no "→ [960, 1920]" either
    adapted = check("LB004", _dropping(4096, [960, 1920], steps, 1000), base).findings[0]
    assert noop_change(adapted.fix) is None and "already the adapted ones" in adapted.fix
    # not adapted: the plan's milestones, with the run's own before the arrow
    naive = check("LB004", _dropping(4096, [30, 60], steps, 1000), base).findings[0]
    assert "milestones [30, 60] → [960, 1920] epochs" in naive.fix


def test_no_fix_anywhere_equals_the_current_value():
    runs = ROOT / "fixtures" / "runs"
    report = audit_runs([p for p in sorted(runs.iterdir()) if p.is_dir()
                         and p.name != "baseline-bs128"] + [REAL / "summarywriter"],
                        baseline_dir=runs / "baseline-bs128", logs_only=True)
    assert report.findings
    for f in report.findings:
        assert noop_change(f.fix) is None, (f.rule_id, f.fix)
