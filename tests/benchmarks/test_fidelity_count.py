"""The fidelity benchmark's counting (benchmarks/fidelity_count.py) and its new pairs
(benchmarks/fidelity_data.py): what issue 23 asks of them, checked independently."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import fidelity_count as fc  # noqa: E402


def _wilson_by_bisection(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson interval from its definition: every p with |k/n − p| ≤ z·√(p(1−p)/n)."""
    def inside(p: float) -> bool:
        return abs(k / n - p) <= z * math.sqrt(p * (1 - p) / n)

    def edge(lo: float, hi: float) -> float:  # inside(lo) != inside(hi)
        for _ in range(80):
            mid = (lo + hi) / 2
            if inside(mid) == inside(lo):
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    p = k / n
    lower = 0.0 if inside(0.0) or k == 0 else edge(0.0, p)
    upper = 1.0 if inside(1.0) or k == n else edge(p, 1.0)
    return lower, upper


@pytest.mark.parametrize("k, n", [(16, 19), (28, 31), (1, 1), (0, 5), (5, 5), (7, 12)])
def test_wilson_matches_its_definition(k, n):
    assert fc.wilson(k, n) == pytest.approx(_wilson_by_bisection(k, n), abs=1e-6)


def test_issue_23_interval_for_16_of_19():  # the issue's "≈ 62–95%"
    lo, hi = fc.wilson(16, 19)
    assert lo == pytest.approx(0.624, abs=1e-3) and hi == pytest.approx(0.945, abs=1e-3)


def _row(pair, arm, seed, acc, verdict=None, **kw):
    r = {"pair": pair, "arm": arm, "seed": seed, "acc": acc, **kw}
    if verdict:
        r["verdict"] = verdict
    return r


def test_rows_that_cannot_disagree_are_listed_not_counted():
    rows = [
        _row("signals1d", "small", 0, 0.80), _row("signals1d", "naive", 0, 0.70, "FAIL"),
        _row("signals1d", "recipe", 0, 0.82, "PASS", cli_verdict="INCONCLUSIVE"),
        _row("signals1d", "calibrated", 0, 0.82, "PASS", calibration=1.0),
        _row("signals1d", "keep", 0, 0.77, "PASS"),  # 70% closed: between the thresholds
        _row("signals1d", "linear", 0, 0.60, "PASS", cli_verdict="FAIL"),  # −100%: a miss
        _row("tabular", "small", 0, 0.85), _row("tabular", "naive", 0, 0.75, "FAIL"),
        _row("tabular", "budget", 0, 0.76, "FAIL", cli_verdict="FAIL"),
        _row("tabular", "calibrated", 0, 0.85, "PASS", calibration=0.5),  # not a duplicate
    ]
    judged = {(r["pair"], r["arm"]): r for r in fc.judged_rows(rows)}
    assert judged[("signals1d", "naive")]["status"] == "by construction"
    assert judged[("signals1d", "calibrated")]["status"] == "duplicate"
    assert judged[("signals1d", "keep")]["status"] == "between"
    assert judged[("tabular", "calibrated")]["status"] == "counted"
    rs = list(judged.values())
    assert fc.tally(rs, "verdict") == (3, 4)  # recipe yes, linear no, budget yes, calibrated
    # the CLI column counts only the rows that have a CLI verdict; INCONCLUSIVE disagrees
    assert fc.tally(rs, "cli_verdict") == (2, 3)
    held = [r for r in rs if fc.held_out(r["pair"])]
    assert fc.tally(held, "verdict") == (2, 2)
    text = fc.agreement_section(rows, [])
    assert "2 by construction" in text and "1 duplicates" in text and "1 between" in text
    assert "| all | 3/4 = 75% [" in text


def test_ghost_curve_uses_the_same_seeds_for_its_baselines():
    rows = [_row("p", "small", 0, 0.9), _row("p", "naive", 0, 0.7),
            _row("p", "small", 1, 0.8), _row("p", "naive", 1, 0.6),
            _row("p", "recipe", 0, 0.9, ghost=4), _row("p", "recipe", 1, 0.7, ghost=4),
            _row("p", "ghost16", 0, 0.8, ghost=16)]
    curve = fc.ghost_curve(rows, "p")
    assert curve[0] == (4, pytest.approx(0.75), 2, True)  # (0.8 − 0.65) / (0.85 − 0.65)
    assert curve[1] == (16, pytest.approx(0.5), 1, False)  # seed 0 only: (0.8 − 0.7) / 0.2


def test_new_pairs_are_what_issue_23_asks_for():
    import fidelity_data as fd
    import torch

    x, y, xt, _ = fd.dataset("glyphs2d")
    assert len(x) >= 16_000 and int(y.max()) + 1 >= 20 and len(xt) > 0
    net = fd.ResNet2d()
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) >= 8
    assert net(x[:3]).shape == (3, fd.GLYPH_CLASSES)
    x, y, _, _ = fd.dataset("tabular")
    mlp = fd.MLP()
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in mlp.modules()) == 3
    assert mlp(x[:5]).shape == (5, fd.TAB_CLASSES)
    # deterministic in the data seed: a second generation gives the same rows
    x2, y2 = fd.make_tabular(len(x) + 4096, fd.DATA_SEED + 17)
    assert torch.equal(x2[:len(x)], x) and torch.equal(y2[:len(y)], y)
